#!/usr/bin/env bash
# Writes the seed corpus (fuzz/corpus/<target>/) once; the files are kept
# in the repository as data. Each seed is a selector byte (which request
# the target exercises, see its switch) and a message protoc encodes from
# text. Run from anywhere: fuzz/make_corpus.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/fuzz/corpus"

encode() {  # type textproto -> binary on stdout
  protoc --proto_path="$ROOT/proto" --encode="crm.v1.$1" \
    crm/v1/common.proto crm/v1/envelope.proto crm/v1/leads.proto crm/v1/sales.proto \
    crm/v1/service_desk.proto crm/v1/analytics.proto crm/v1/admin.proto crm/v1/audit.proto <<<"$2"
}

byte() { printf "\\x$(printf %02x "$1")"; }

seed() {  # target name selector type textproto
  mkdir -p "$OUT/$1"
  { byte "$3"; encode "$4" "$5"; } >"$OUT/$1/$2"
}

text_seed() {  # target name selector text
  mkdir -p "$OUT/$1"
  { byte "$3"; printf '%s' "$4"; } >"$OUT/$1/$2"
}

# Structured inputs (fuzz_input.h SplitParts): parts of a 2-byte
# little-endian length and that many bytes.
part() {  # type textproto
  local bytes; bytes="$(mktemp)"; encode "$1" "$2" >"$bytes"
  local n; n=$(stat -c %s "$bytes"); byte $((n & 255)); byte $((n >> 8)); cat "$bytes"; rm -f "$bytes"
}
text_part() {  # ASCII text
  local n=${#1}; byte $((n & 255)); byte $((n >> 8)); printf '%s' "$1"
}

# Seeds are written over; other files (inputs a fuzzer found and that were
# added by hand as regression cases) are kept.
mkdir -p "$OUT"

# ---- admin_request ----
AD=admin_request
mkdir -p "$OUT/$AD"
{ byte 0; encode EraseCustomerRequest 'customer_id: "cus_1" reason: "GDPR request 2026-118"'; } >"$OUT/$AD/erase"
{ byte 1; encode ExportCustomerRequest 'customer_id: "cus_1"'; } >"$OUT/$AD/export"
{ byte 1; encode ExportCustomerRequest 'customer_id: "cus_1" page_token: "bm90LWEtdG9rZW4"'; } >"$OUT/$AD/export_token"
text_seed $AD token 2 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZGEifQ.c2ln'
signed() {  # name header claims
  { byte 3; text_part "$2"; text_part "$3"; } >"$OUT/$AD/$1"
}
signed signed_admin '{"alg":"HS256","typ":"JWT"}' '{"iss":"crm-fuzz","aud":"crm","sub":"ada","roles":["admin"],"territory":"emea","iat":1799999000,"exp":1900000000}'
signed signed_audiences '{"alg":"HS256"}' '{"iss":"crm-fuzz","aud":["billing","crm"],"sub":"svc","roles":["service"],"exp":1800000100,"nbf":1799999990}'
signed signed_expired '{"alg":"HS256","kid":"k1"}' '{"iss":"crm-fuzz","aud":"crm","sub":"old","exp":1700000000}'
{ byte 4; text_part "cus_1"; text_part "lead_0042|2026-01-01"; } >"$OUT/$AD/page_token"

# ---- leads_request ----
L=leads_request
seed $L capture 0 CaptureLeadRequest 'request_id: "r1" channel: LEAD_CHANNEL_WEB_FORM contact { first_name: " Ada " email: "Ada@Example.COM" phone: "0044 20 7946 0958" } company: "ACME" region: "emea" product_interests: "crm" attributes { key: "utm" value: "x" } bant { budget { currency: "EUR" minor_units: 100000 } need: "crm" }'
seed $L import_row 1 ImportLeadRow 'row_number: 7 contact { email: "row@example.com" } company: "Row Co" region: "amer"'
seed $L activity 2 RecordLeadActivityRequest 'request_id: "r2" lead_id: "lead_1" expected_version: 3 type: LEAD_ACTIVITY_TYPE_EMAIL_OPENED occurred_at { seconds: 1700000000 } detail: "opened"'
seed $L qualify 3 QualifyLeadRequest 'request_id: "r3" lead_id: "lead_1" bant { decision_maker: true need: "x" } note: "ok"'
seed $L disqualify 4 DisqualifyLeadRequest 'request_id: "r4" lead_id: "lead_1" reason: "no budget"'
seed $L nurture 5 NurtureLeadRequest 'request_id: "r5" lead_id: "lead_1" reason: "later"'
seed $L convert 6 ConvertLeadRequest 'request_id: "r6" lead_id: "lead_1" owner_id: "rep_ada" opportunity_name: "Deal" estimated_amount { currency: "EUR" minor_units: 500000 }'
seed $L assign 7 AssignLeadRequest 'request_id: "r7" lead_id: "lead_1" owner_id: "rep_ada" reason: "territory"'
seed $L merge 8 MergeLeadsRequest 'request_id: "r8" survivor_lead_id: "lead_1" merged_lead_id: "lead_2" survivor_expected_version: 2'
seed $L rule 9 AssignmentRule 'name: " EMEA CRM " regions: "EMEA" regions: "emea" product_interests: "crm" team_id: "t1" team_members: "rep_a" team_members: "rep_b" strategy: TEAM_STRATEGY_ROUND_ROBIN'
text_seed $L email 10 ' Grace.Hopper+crm@Navy.MIL '
text_seed $L phone 10 '(+1) 202-555-0143'
seed $L list_leads 11 ListLeadsRequest 'owner_id: "rep_ada" statuses: LEAD_STATUS_NEW region: " EMEA " min_score: 40 max_score: 90 sort: LEAD_SORT_SCORE_DESC page { page_size: 5000 }'
{ byte 12
  part AssignmentRuleTable 'version: 4 rules { rule_id: "r1" name: "EMEA" regions: "emea" owner_id: "rep_a" enabled: true position: 1 } rules { rule_id: "r2" name: "CRM" product_interests: "crm" team_id: "t1" team_members: "rep_b" enabled: true position: 2 } rules { rule_id: "r3" name: "Old" owner_id: "rep_c" position: 3 }'
  part ReorderAssignmentRulesRequest 'request_id: "r12" rule_ids: "r3" rule_ids: "r1" rule_ids: "r2" expected_table_version: 4'
  part SetAssignmentRuleEnabledRequest 'request_id: "r13" rule_id: "r3" expected_table_version: 4'
} >"$OUT/$L/rule_table"
seed $L import_head 13 ImportLeadsRequest 'import_id: "fair-2026-03" default_channel: LEAD_CHANNEL_TRADE_SHOW rows { row_number: 1 contact { email: "a@example.com" } } rows { row_number: 9223372036854775807 contact { phone: "+442079460958" } }'
{ byte 14; text_part "lead_1"; text_part "40@2"; } >"$OUT/$L/offset_token"

# ---- sales_request ----
S=sales_request
seed $S open_customer 0 OpenCustomerRequest 'request_id: "s0" customer_id: "cus_1" name: " Navy " owner_id: "rep_ada" territory: "AMER" contacts { email: "Grace@Navy.example" first_name: "Grace" }'
seed $S open_opportunity 1 OpenOpportunityRequest 'request_id: "s1" customer_id: "cus_1" name: "Compilers" amount { currency: "EUR" minor_units: 1200000 } expected_close_date: "2025-06-30"'
seed $S change_stage 2 ChangeOpportunityStageRequest 'request_id: "s2" opportunity_id: "opp_1" expected_version: 1 stage_id: "closed_lost" lost_reason: "price"'
seed $S revise 3 ReviseOpportunityRequest 'request_id: "s3" opportunity_id: "opp_1" expected_version: 2 amount { currency: "EUR" minor_units: 1 } expected_close_date: "2024-02-29" name: "x"'
seed $S create_task 4 CreateTaskRequest 'request_id: "s4" customer_id: "cus_1" opportunity_id: "opp_1" title: " Call back " notes: "about\nrenewal" owner_id: "rep_ada" due_at { seconds: 1735689600 }'
seed $S log_activity 5 LogActivityRequest 'request_id: "s5" customer_id: "cus_1" kind: ACTIVITY_KIND_CALL subject: "Renewal" notes: "Agreed" occurred_at { seconds: 1735689600 }'
seed $S draft_quote 6 DraftQuoteRequest 'request_id: "s6" opportunity_id: "opp_1" currency: "EUR" lines { product_id: "p" quantity: 3 unit_price { currency: "EUR" minor_units: 999999 } discount_bps: 1250 tax_rate_bps: 1900 } lines { product_id: "q" quantity: 9223372036854775807 unit_price { currency: "EUR" minor_units: 2 } } valid_until: "2025-12-31"'
seed $S draft_contract 7 DraftContractRequest 'request_id: "s7" order_id: "ord_1" start_date: "2025-07-01"'
seed $S forecast 8 GetForecastRequest 'period: FORECAST_PERIOD_QUARTER owner_id: "rep_ada" from_date: "2025-01-01" to_date: "2025-12-31"'
seed $S pipeline 9 Pipeline 'pipeline_id: "p" stages { stage_id: "a" probability_percent: 10 outcome: STAGE_OUTCOME_OPEN } stages { stage_id: "b" probability_percent: 50 outcome: STAGE_OUTCOME_OPEN } stages { stage_id: "won" probability_percent: 100 outcome: STAGE_OUTCOME_WON } stages { stage_id: "lost" outcome: STAGE_OUTCOME_LOST } allow_moving_back: true'
seed $S money 10 Money 'currency: "EUR" minor_units: 999999999999999'
text_seed $S date 11 '2024-02-29'
text_seed $S tiers 11 'standard:0,silver:1000000,gold:5000000'
seed $S list_customers 12 ListCustomersRequest 'owner_id: "rep_ada" page { page_size: 20 page_token: "not-a-token" }'
seed $S list_opportunities 13 ListOpportunitiesRequest 'owner_id: "rep_ada" stage_id: "proposal" close_date_from: "2025-01-01" close_date_to: "2024-12-31" page { page_size: 900 }'
seed $S list_activities 14 ListActivitiesRequest 'opportunity_id: "opp_1" page { page_size: 25 }'
seed $S list_tasks 15 ListTasksRequest 'owner_id: "rep_ada" status: TASK_STATUS_OPEN overdue_only: true page { page_size: 10 }'

# ---- service_desk_request ----
D=service_desk_request
seed $D open_ticket 0 OpenTicketRequest 'request_id: "d0" customer_id: "cus_1" channel: TICKET_CHANNEL_EMAIL subject: " Router down " description: "It blinks\nred" product: "router" category: "outage"'
seed $D assign 1 AssignTicketRequest 'request_id: "d1" ticket_id: "tkt_1" expected_version: 1 assignee_id: "agent_1" team_id: "t1"'
seed $D reply 2 ReplyToTicketRequest 'request_id: "d2" ticket_id: "tkt_1" author_type: AUTHOR_TYPE_AGENT body: "Try a reboot"'
seed $D note 3 AddInternalNoteRequest 'request_id: "d3" ticket_id: "tkt_1" body: "vip"'
seed $D pending 4 MarkTicketPendingRequest 'request_id: "d4" ticket_id: "tkt_1" expected_version: 4'
seed $D resolve 5 ResolveTicketRequest 'request_id: "d5" ticket_id: "tkt_1" resolution_note: "rebooted" solution_article_id: "art_1"'
seed $D close 6 CloseTicketRequest 'request_id: "d6" ticket_id: "tkt_1"'
seed $D reopen 7 ReopenTicketRequest 'request_id: "d7" ticket_id: "tkt_1" reason: "again"'
seed $D link 8 LinkSolutionArticleRequest 'request_id: "d8" ticket_id: "tkt_1" article_id: "art_1"'
seed $D csat 9 SubmitCsatRequest 'request_id: "d9" ticket_id: "tkt_1" score: 4 comment: "fine" nps: 9'
seed $D list 10 ListTicketsRequest 'customer_id: "cus_1" status: TICKET_STATUS_OPEN breached: true page { page_size: 10 page_token: "abc" }'
seed $D article 11 CreateArticleRequest 'request_id: "d11" title: "Reset" body: "Hold the button" tags: " Router " tags: "router" tags: "WiFi" product: "router"'
seed $D settings 12 ServiceDeskSettings ''
text_seed $D settings_text 13 "$(cat "$ROOT/services/service-desk/config/example.textproto")"
seed $D get 14 GetTicketRequest 'ticket_id: "tkt_1" messages_page { page_size: 20 page_token: "7" }'
text_seed $D text 15 'Subject line'
text_seed $D search 16 'Printers NOT printing: the batteries of the Wi-Fi router (Ünïcode Straße) — a, I, to'

# ---- analytics_request ----
A=analytics_request
seed $A customer360 0 GetCustomer360Request 'customer_id: "cus_fuzz_a" timeline_page { page_size: 50 }'
seed $A customer360_token 0 GetCustomer360Request 'customer_id: "cus_fuzz_a" timeline_page { page_size: 7 page_token: "AAAAAAAAAAA" }'
seed $A customer360_b 0 GetCustomer360Request 'customer_id: "cus_fuzz_b"'
seed $A segment 1 ListSegmentRequest 'segment: SEGMENT_POTENTIAL page { page_size: 1 }'
seed $A funnel 2 GetFunnelRequest 'period: "2023-11" channel: LEAD_CHANNEL_WEB_FORM territory: "emea"'
seed $A kpis 3 GetServiceKpisRequest 'from { seconds: 1700000000 } to { seconds: 1800000000 } bucket: KPI_BUCKET_WEEK product: "router"'
seed $A settings 4 AnalyticsSettings ''
text_seed $A settings_text 5 'dormant_after_days: 90'
seed $A audit 6 ListAuditEntriesRequest 'actor: "rep_ada" page { page_size: 2 }'

# ---- event_envelope: parts of 2-byte little-endian length + envelope ----
E=event_envelope
envelope() { part EventEnvelope "$1"; }
LEAD='event_id: "evt-1" stream: "lead-l1" stream_version: 1 customer_id: "cus_e" type: "LeadCaptured" occurred_at { seconds: 1700000000 } payload { [type.googleapis.com/crm.v1.LeadCaptured] { lead_id: "l1" customer_id: "cus_e" contact { email: "e@example.com" } } }'
ORDER='event_id: "evt-2" stream: "order-o1" stream_version: 1 customer_id: "cus_e" type: "OrderPlaced" occurred_at { seconds: 1700001000 } payload { [type.googleapis.com/crm.v1.OrderPlaced] { order_id: "o1" customer_id: "cus_e" currency: "EUR" totals { total { currency: "EUR" minor_units: 5000 } } } }'
TICKET='event_id: "evt-3" stream: "ticket-t1" stream_version: 1 customer_id: "cus_e" type: "TicketOpened" occurred_at { seconds: 1700002000 } payload { [type.googleapis.com/crm.v1.TicketOpened] { ticket_id: "t1" customer_id: "cus_e" subject: "help" product: "router" } }'
mkdir -p "$OUT/$E"
{ byte 0; envelope "$LEAD"; } >"$OUT/$E/lead"
{ byte $((1 | 2 << 2)); envelope "$LEAD"; envelope "$ORDER"; envelope "$TICKET"; } >"$OUT/$E/three_topics"
{ byte 0; envelope "$LEAD"; byte 9; byte 0; printf 'not proto'; } >"$OUT/$E/poison"

# One seed per group of event types, so that every consumer's handling of
# each type runs from the corpus: a type URL is compared whole, which the
# fuzzer alone seldom finds. Each seed holds its records' whole story in
# one batch (up to 16 events): libFuzzer runs seeds smallest first, and the
# consumers keep what earlier inputs applied, so a later version seen first
# would make the earlier ones duplicates.
# ev stream version type seconds customer payload.
ev() {
  printf 'event_id: "evt-%s-%s" stream: "%s" stream_version: %s customer_id: "%s" type: "%s" occurred_at { seconds: %s } payload { [type.googleapis.com/crm.v1.%s] { %s } }' \
    "$1" "$2" "$1" "$2" "$5" "$3" "$4" "$3" "$6"
}
batch() {  # name selector envelope...
  local name=$1 selector=$2; shift 2
  { byte "$selector"; for e in "$@"; do envelope "$e"; done; } >"$OUT/$E/$name"
}
batch 1_lead_lifecycle_and_merge 0 \
  "$(ev lead-l2 1 LeadCaptured 1700000000 cus_f 'lead_id: "l2" customer_id: "cus_f" contact { email: "f@example.com" } region: "emea" channel: LEAD_CHANNEL_TRADE_SHOW')" \
  "$(ev lead-l2 2 LeadScoreChanged 1700000100 cus_f 'lead_id: "l2" customer_id: "cus_f" score { total: 70 } reason: "bant"')" \
  "$(ev lead-l2 3 LeadAssigned 1700000200 cus_f 'lead_id: "l2" customer_id: "cus_f" owner_id: "rep_a" team_id: "t1" rule_id: "r1"')" \
  "$(ev lead-l2 4 LeadActivityRecorded 1700000300 cus_f 'lead_id: "l2" customer_id: "cus_f" type: LEAD_ACTIVITY_TYPE_EMAIL_OPENED activity_at { seconds: 1700000300 } points: 5')" \
  "$(ev lead-l2 5 LeadQualified 1700000400 cus_f 'lead_id: "l2" customer_id: "cus_f" bant { need: "crm" }')" \
  "$(ev lead-l2 6 LeadConverted 1700000500 cus_f 'lead_id: "l2" customer_id: "cus_f" owner_id: "rep_a" opportunity_name: "Deal" estimated_amount { currency: "EUR" minor_units: 100000 } channel: LEAD_CHANNEL_TRADE_SHOW score: 70')" \
  "$(ev lead-l3 1 LeadNurtureStarted 1700000600 cus_g 'lead_id: "l3" customer_id: "cus_g" reason: "later"')" \
  "$(ev lead-l3 2 LeadDisqualified 1700000700 cus_g 'lead_id: "l3" customer_id: "cus_g" reason: "no budget"')" \
  "$(ev lead-l4 1 LeadCaptured 1700001000 cus_h 'lead_id: "l4" customer_id: "cus_h" contact { phone: "+442079460958" }')" \
  "$(ev lead-l4 2 LeadMergedInto 1700001100 cus_h 'lead_id: "l4" customer_id: "cus_h" survivor_lead_id: "l2" survivor_customer_id: "cus_f"')" \
  "$(ev lead-l2 7 LeadsMerged 1700001100 cus_f 'survivor_lead_id: "l2" merged_lead_id: "l4" survivor_customer_id: "cus_f" merged_customer_id: "cus_h" merged_lead { lead_id: "l4" customer_id: "cus_h" }')"
batch 3_sales_pipeline_and_orders $((0x55)) \
  "$(ev customer-cus_f 1 CustomerOpened 1700002000 cus_f 'customer_id: "cus_f" name: "F Ltd" owner_id: "rep_a" territory: "emea" tier: "standard" lead_id: "l2"')" \
  "$(ev customer-cus_f 2 CustomerTierChanged 1700002100 cus_f 'customer_id: "cus_f" from_tier: "standard" to_tier: "gold" cumulative_spend { currency: "EUR" minor_units: 9000000 }')" \
  "$(ev opp-o2 1 OpportunityOpened 1700002200 cus_f 'opportunity_id: "o2" customer_id: "cus_f" pipeline_id: "default" name: "Deal" owner_id: "rep_a" stage_id: "prospecting" probability_percent: 10 amount { currency: "EUR" minor_units: 100000 } lead_id: "l2"')" \
  "$(ev opp-o2 2 OpportunityRevised 1700002300 cus_f 'opportunity_id: "o2" customer_id: "cus_f" amount { currency: "EUR" minor_units: 120000 } expected_close_date: "2024-01-31"')" \
  "$(ev opp-o2 3 OpportunityWentStale 1700002400 cus_f 'opportunity_id: "o2" customer_id: "cus_f" owner_id: "rep_a" inactive_since { seconds: 1700002300 }')" \
  "$(ev opp-o2 4 OpportunityStageChanged 1700002500 cus_f 'opportunity_id: "o2" customer_id: "cus_f" from_stage_id: "prospecting" to_stage_id: "closed_won" probability_percent: 100 outcome: STAGE_OUTCOME_WON time_in_previous_stage { seconds: 300 } amount { currency: "EUR" minor_units: 120000 }')" \
  "$(ev activity-a1 1 ActivityLogged 1700002600 cus_f 'activity_id: "a1" customer_id: "cus_f" opportunity_id: "o2" kind: ACTIVITY_KIND_CALL occurred_at { seconds: 1700002600 } logged_by: "rep_a"')" \
  "$(ev task-k1 1 TaskCreated 1700002700 cus_f 'task_id: "k1" customer_id: "cus_f" opportunity_id: "o2" owner_id: "rep_a" due_at { seconds: 1700090000 }')" \
  "$(ev task-k1 2 TaskReminderRaised 1700090000 cus_f 'task_id: "k1" customer_id: "cus_f" owner_id: "rep_a" due_at { seconds: 1700090000 }')" \
  "$(ev order-o3 1 OrderPlaced 1700003000 cus_f 'order_id: "o3" customer_id: "cus_f" opportunity_id: "o2" currency: "EUR" lines { product_id: "router" quantity: 2 unit_price { currency: "EUR" minor_units: 60000 } } totals { total { currency: "EUR" minor_units: 120000 } }')" \
  "$(ev contract-c1 1 InvoiceRequested 1700003100 cus_f 'contract_id: "c1" order_id: "o3" customer_id: "cus_f" currency: "EUR" totals { total { currency: "EUR" minor_units: 120000 } }')"
batch 5_desk_ticket_to_close $((0xAA)) \
  "$(ev ticket-t2 1 TicketOpened 1700004000 cus_f 'ticket_id: "t2" customer_id: "cus_f" subject: "down" product: "router"')" \
  "$(ev ticket-t2 2 TicketAssigned 1700004100 cus_f 'ticket_id: "t2" team_id: "t1" assignee_id: "agent_1" reason: ASSIGNMENT_REASON_ROUTING strategy: ASSIGNMENT_STRATEGY_ROUND_ROBIN')" \
  "$(ev ticket-t2 3 TicketSlaWarningRaised 1700004200 cus_f 'ticket_id: "t2" target: SLA_TARGET_FIRST_RESPONSE due_at { seconds: 1700004300 } priority: TICKET_PRIORITY_HIGH team_id: "t1"')" \
  "$(ev ticket-t2 4 TicketSlaBreached 1700004300 cus_f 'ticket_id: "t2" target: SLA_TARGET_FIRST_RESPONSE due_at { seconds: 1700004300 } priority: TICKET_PRIORITY_HIGH team_id: "t1"')" \
  "$(ev ticket-t2 5 TicketEscalated 1700004310 cus_f 'ticket_id: "t2" target: SLA_TARGET_FIRST_RESPONSE from_priority: TICKET_PRIORITY_HIGH to_priority: TICKET_PRIORITY_URGENT')" \
  "$(ev ticket-t2 6 TeamLeadNotified 1700004320 cus_f 'ticket_id: "t2" team_id: "t1" lead_id: "agent_lead" target: SLA_TARGET_FIRST_RESPONSE reason: "breached"')" \
  "$(ev ticket-t2 7 TicketReplied 1700004400 cus_f 'ticket_id: "t2" message_id: "m1" author_id: "agent_1" author_type: AUTHOR_TYPE_AGENT first_response: true')" \
  "$(ev ticket-t2 8 TicketStatusChanged 1700004500 cus_f 'ticket_id: "t2" from_status: TICKET_STATUS_OPEN to_status: TICKET_STATUS_PENDING')" \
  "$(ev ticket-t2 9 TicketResolved 1700005000 cus_f 'ticket_id: "t2" solution_article_id: "art_1" reopen_until { seconds: 1700600000 }')" \
  "$(ev ticket-t2 10 CsatSubmitted 1700005100 cus_f 'ticket_id: "t2" score: 2 nps: 3')" \
  "$(ev ticket-t2 11 TicketReopened 1700005200 cus_f 'ticket_id: "t2" reason: "again" from_status: TICKET_STATUS_RESOLVED')" \
  "$(ev ticket-t2 12 TicketClosed 1700005300 cus_f 'ticket_id: "t2"')" \
  "$(ev warranty-o3 1 WarrantyFollowUpRequested 1700005400 cus_f 'customer_id: "cus_f" order_id: "o3" product_id: "router" purchased_at { seconds: 1700003000 } warranty_ends_at { seconds: 1731539000 } due_at { seconds: 1729000000 }')"
batch 7_analytics_and_audit $((0xFF)) \
  "$(ev churn-cus_f 1 ChurnRiskRaised 1700006000 cus_f 'customer_id: "cus_f" score: 80 threshold: 70 owner_id: "rep_a" cause_event_id: "evt-ticket-t2-4" evaluated_at { seconds: 1700006000 }')" \
  "$(ev audit-1 1 AccessDenied 1700006100 "" 'method: "/crm.v1.AdminService/EraseCustomer" target: "cus_f" code: "PERMISSION_DENIED" peer: "ipv4:10.0.0.1:1234"')" \
  "$(ev audit-2 1 AuthenticationFailuresFlagged 1700006200 "" 'peer: "ipv4:10.0.0.1" failures: 20 window_seconds: 60 first_failure_at { seconds: 1700006150 } last_failure_at { seconds: 1700006200 }')"
# Key records as crm.keys.v1 carries them: an issue record no master key
# here unwraps (parked), a merge linking two customers the vault holds keys
# for, the survivor's erasure (destroying both customers' keys) and a
# destruction of the parked key.
batch 8_key_records 0 \
  "$(ev pii-key-kfz1 1 DataKeyIssued 1700007000 cus_k9 'key_id: "kfz1" customer_id: "cus_k9" wrapped_key: "000000000000111111111111111111111111111111112222222222222222" issuer: "crm/sales"')" \
  "$(ev pii-merge-l9 1 CustomersMerged 1700007100 cus_k2 'merged_customer_id: "cus_k3" survivor_customer_id: "cus_k2" merged_lead_id: "l9"')" \
  "$(ev pii-erase-sales-cus_k2 1 CustomerErased 1700007200 cus_k2 'customer_id: "cus_k2" reason: "GDPR request"')" \
  "$(ev pii-key-kfz1 2 DataKeyDestroyed 1700007300 cus_k9 'key_id: "kfz1" customer_id: "cus_k9"')"
