#pragma once

// Builders of the envelopes the analytics tests feed: one event of another
// service's topic, with just the fields analytics reads.
#include <string>

#include "absl/strings/str_cat.h"
#include "crm/v1/envelope.pb.h"
#include "crm/v1/leads.pb.h"
#include "crm/v1/sales.pb.h"
#include "crm/v1/service_desk.pb.h"
#include "libs/common/subscriber.h"

namespace crm::analytics::testing {

constexpr int64_t kDay = 86400;

inline crm::v1::EventEnvelope Envelope(const google::protobuf::Message& payload,
                                       const std::string& customer, const std::string& event_id,
                                       const std::string& stream, int64_t version,
                                       int64_t seconds) {
  crm::v1::EventEnvelope e;
  e.set_event_id(event_id);
  e.set_stream(stream);
  e.set_stream_version(version);
  e.set_customer_id(customer);
  e.set_type(payload.GetDescriptor()->name());
  e.mutable_occurred_at()->set_seconds(seconds);
  e.mutable_payload()->PackFrom(payload);
  return e;
}

inline crm::v1::EventEnvelope OrderPlacedAt(const std::string& customer,
                                            const std::string& order_id, int64_t minor_units,
                                            int64_t seconds, const std::string& currency = "EUR") {
  crm::v1::OrderPlaced m;
  m.set_order_id(order_id);
  m.set_customer_id(customer);
  m.set_currency(currency);
  m.mutable_totals()->mutable_total()->set_currency(currency);
  m.mutable_totals()->mutable_total()->set_minor_units(minor_units);
  return Envelope(m, customer, absl::StrCat("evt-order-", order_id),
                  absl::StrCat("order-", order_id), 1, seconds);
}

inline crm::v1::EventEnvelope LeadCapturedAt(const std::string& customer,
                                             const std::string& lead_id, int32_t score,
                                             int64_t seconds) {
  crm::v1::LeadCaptured m;
  m.set_lead_id(lead_id);
  m.set_customer_id(customer);
  m.mutable_contact()->set_email(absl::StrCat(lead_id, "@example.com"));
  m.mutable_score()->set_total(score);
  return Envelope(m, customer, absl::StrCat("evt-lead-", lead_id), absl::StrCat("lead-", lead_id),
                  1, seconds);
}

inline crm::v1::EventEnvelope TicketOpenedAt(
    const std::string& customer, const std::string& ticket, int64_t seconds,
    const std::string& product = "router", const std::string& category = "question",
    crm::v1::TicketPriority priority = crm::v1::TICKET_PRIORITY_NORMAL) {
  crm::v1::TicketOpened m;
  m.set_ticket_id(ticket);
  m.set_customer_id(customer);
  m.set_subject("help");
  m.set_product(product);
  m.set_category(category);
  m.set_priority(priority);
  return Envelope(m, customer, absl::StrCat("evt-", ticket, "-1"), absl::StrCat("ticket-", ticket),
                  1, seconds);
}

// The n-th event (version) of a ticket's stream.
inline crm::v1::EventEnvelope TicketEvent(const google::protobuf::Message& payload,
                                          const std::string& customer, const std::string& ticket,
                                          int64_t version, int64_t seconds) {
  return Envelope(payload, customer, absl::StrCat("evt-", ticket, "-", version),
                  absl::StrCat("ticket-", ticket), version, seconds);
}

// A lead handed to `owner`, or put into `queue` (from `previous_owner`).
inline crm::v1::LeadAssigned LeadAssignment(const std::string& lead, const std::string& owner,
                                            const std::string& queue = "",
                                            const std::string& previous_owner = "") {
  crm::v1::LeadAssigned m;
  m.set_lead_id(lead);
  m.set_owner_id(owner);
  m.set_queue(queue);
  m.set_previous_owner_id(previous_owner);
  return m;
}

inline crm::v1::TicketAssigned Assigned(const std::string& ticket, const std::string& team) {
  crm::v1::TicketAssigned m;
  m.set_ticket_id(ticket);
  m.set_team_id(team);
  m.set_assignee_id(absl::StrCat(team, "-agent"));
  return m;
}

inline crm::v1::TicketReplied FirstReply(const std::string& ticket) {
  crm::v1::TicketReplied m;
  m.set_ticket_id(ticket);
  m.set_author_type(crm::v1::AUTHOR_TYPE_AGENT);
  m.set_first_response(true);
  return m;
}

inline crm::v1::TicketResolved Resolved(const std::string& ticket) {
  crm::v1::TicketResolved m;
  m.set_ticket_id(ticket);
  return m;
}

inline crm::v1::TicketSlaBreached Breached(const std::string& ticket, const std::string& team) {
  crm::v1::TicketSlaBreached m;
  m.set_ticket_id(ticket);
  m.set_target(crm::v1::SLA_TARGET_FIRST_RESPONSE);
  m.set_team_id(team);
  return m;
}

inline crm::v1::CsatSubmitted Csat(const std::string& ticket, int32_t score) {
  crm::v1::CsatSubmitted m;
  m.set_ticket_id(ticket);
  m.set_score(score);
  return m;
}

inline ConsumedMessage OnTopic(const std::string& topic, int64_t offset,
                               const crm::v1::EventEnvelope& e) {
  return {topic, 0, offset, e.SerializeAsString()};
}

}  // namespace crm::analytics::testing
