// Personal data end to end: encrypted in events and on the topics, readable
// through the APIs of every service that holds the customer's key, and gone
// everywhere (including a rebuild from the topics) after EraseCustomer.
#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "crm/v1/admin.grpc.pb.h"
#include "crm/v1/analytics.pb.h"
#include "crm/v1/pii.pb.h"
#include "crm/v1/sales.grpc.pb.h"
#include "crm/v1/service_desk.grpc.pb.h"
#include "gtest/gtest.h"
#include "libs/common/auth/principal.h"
#include "libs/common/kafka.h"
#include "libs/common/pii/key_stream.h"
#include "libs/common/pii/sealed_value.h"
#include "libs/common/reply_budget.h"
#include "libs/common/testing/files.h"
#include "tests/integration/process.h"
#include "tests/integration/stack.h"
#include "tests/integration/topic_io.h"

namespace crm::testing {
namespace {

crm::v1::CaptureLeadResponse Capture(Stack& stack, const std::string& id, const std::string& first,
                                     const std::string& last, const std::string& email,
                                     const std::string& phone) {
  crm::v1::CaptureLeadRequest req;
  req.set_request_id(id);
  req.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
  req.set_company("Navy");
  req.mutable_contact()->set_first_name(first);
  req.mutable_contact()->set_last_name(last);
  req.mutable_contact()->set_email(email);
  req.mutable_contact()->set_phone(phone);
  crm::v1::CaptureLeadResponse resp;
  grpc::ClientContext ctx;
  const grpc::Status st = stack.LeadsStub()->CaptureLead(&ctx, req, &resp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return resp;
}

// A unary call with a context of its own.
template <typename Call>
grpc::Status Unary(const Call& call) {
  grpc::ClientContext ctx;
  return call(&ctx);
}

#define ASSERT_OK(call)                         \
  do {                                          \
    const grpc::Status st = (call);             \
    ASSERT_TRUE(st.ok()) << st.error_message(); \
  } while (false)

crm::v1::Lead GetLead(Stack& stack, const std::string& lead_id) {
  crm::v1::GetLeadRequest req;
  req.set_lead_id(lead_id);
  crm::v1::Lead lead;
  grpc::ClientContext ctx;
  const grpc::Status st = stack.LeadsStub()->GetLead(&ctx, req, &lead);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return lead;
}

// The 360 view from `replica` (an analytics process), empty if it has none.
crm::v1::Customer360 View(Stack& stack, const std::string& customer_id,
                          const std::string& replica = "analytics") {
  crm::v1::Customer360 view;
  auto stub = crm::v1::AnalyticsService::NewStub(stack.Channel(replica));
  if (!Stack::Get360(*stub, customer_id, view).ok()) return {};
  return view;
}

grpc::Status Erase(Stack& stack, const std::string& customer_id, const std::string& reason,
                   crm::v1::EraseCustomerResponse* resp,
                   std::optional<auth::Principal> as = std::nullopt) {
  auto admin = crm::v1::AdminService::NewStub(stack.Channel("leads", std::move(as)));
  crm::v1::EraseCustomerRequest req;
  req.set_customer_id(customer_id);
  req.set_reason(reason);
  grpc::ClientContext ctx;
  return admin->EraseCustomer(&ctx, req, resp);
}

crm::v1::CustomerExport Export(Stack& stack, const std::string& service,
                               const std::string& customer_id, grpc::Status* status,
                               std::optional<auth::Principal> as = std::nullopt) {
  auto admin = crm::v1::AdminService::NewStub(stack.Channel(service, std::move(as)));
  crm::v1::ExportCustomerRequest req;
  req.set_customer_id(customer_id);
  crm::v1::CustomerExport out;
  grpc::ClientContext ctx;
  *status = admin->ExportCustomer(&ctx, req, &out);
  return out;
}

TEST(PiiTest, EncryptedOnTheTopicsReadableThroughTheApisGoneEverywhereAfterErasure) {
  Stack stack;
  ASSERT_TRUE(stack.StartBroker());
  ASSERT_TRUE(stack.Start("leads"));
  ASSERT_TRUE(stack.Start("analytics"));
  const auto grace =
      Capture(stack, "pii-1", "Grace", "Hopperfield", "grace@navy.example", "+15551234567");
  const auto ada =
      Capture(stack, "pii-2", "Ada", "Lovelacewood", "ada@navy.example", "+15557654321");
  ASSERT_NE(grace.customer_id(), ada.customer_id());

  // The API answers in plaintext.
  const crm::v1::Lead lead = GetLead(stack, grace.lead_id());
  EXPECT_EQ(lead.contact().first_name(), "Grace");
  EXPECT_EQ(lead.contact().email(), "grace@navy.example");
  EXPECT_EQ(lead.contact().phone(), "+15551234567");

  // The topic carries ciphertext only.
  auto captured = ConsumeTopic(
      stack.brokers(), kLeadsTopic,
      [&](const auto& e) { return e.customer_id() == grace.customer_id(); },
      [](const auto& seen) { return !seen.empty(); });
  ASSERT_FALSE(captured.empty());
  for (const auto& e : captured) {
    const std::string bytes = e.SerializeAsString();
    EXPECT_FALSE(absl::StrContains(bytes, "grace@navy.example")) << e.type();
    EXPECT_FALSE(absl::StrContains(bytes, "Hopperfield")) << e.type();
    EXPECT_FALSE(absl::StrContains(bytes, "15551234567")) << e.type();
  }
  crm::v1::LeadCaptured payload;
  ASSERT_TRUE(captured.front().payload().UnpackTo(&payload));
  EXPECT_TRUE(pii::IsSealed(payload.contact().email()));
  // A topic reader cannot have the API open it: copied into a record of
  // their own, the sealed value is refused before anything is stored.
  {
    crm::v1::CaptureLeadRequest copy;
    copy.set_request_id("pii-copy");
    copy.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
    copy.mutable_contact()->set_email("reader@example.com");
    copy.mutable_contact()->set_first_name(payload.contact().email());
    crm::v1::CaptureLeadResponse resp;
    const grpc::Status refused =
        Unary([&](auto* c) { return stack.LeadsStub()->CaptureLead(c, copy, &resp); });
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(absl::StartsWith(refused.error_message(), "contact.first_name:"))
        << refused.error_message();
  }

  // Analytics learns the key from crm.keys.v1 and shows the person.
  ASSERT_TRUE(Eventually([&] {
    return View(stack, grace.customer_id()).profile().email() == "grace@navy.example";
  })) << View(stack, grace.customer_id()).DebugString();
  EXPECT_EQ(View(stack, grace.customer_id()).profile().last_name(), "Hopperfield");
  const int64_t events_before = View(stack, grace.customer_id()).event_count();

  // Erasure is for admins, and needs a reason.
  crm::v1::EraseCustomerResponse erased;
  EXPECT_EQ(Erase(stack, grace.customer_id(), "", &erased).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // Not a customer id: refused (with a NUL, the erasure row's id read back
  // at the next start would be cut short to the customer before it).
  const grpc::Status cut =
      Erase(stack, grace.customer_id() + std::string(1, '\0') + "x", "GDPR request 117", &erased);
  EXPECT_EQ(cut.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(cut.error_message(), "customer_id: may contain only printable ASCII");
  EXPECT_EQ(Erase(stack, grace.customer_id(), std::string(65, 'r'), &erased).error_message(),
            "reason: longer than 64 bytes; give a reference to the request, not details");
  // The reason is kept in clear for good: no address or name goes there.
  const grpc::Status chatty =
      Erase(stack, grace.customer_id(), "asked by grace@navy.example", &erased);
  EXPECT_EQ(chatty.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(chatty.error_message().rfind("reason:", 0), 0u) << chatty.error_message();
  EXPECT_EQ(Erase(stack, grace.customer_id(), "GDPR", &erased,
                  auth::Principal{"rep-1", {auth::kRoleSalesRep}, ""})
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  const grpc::Status st = Erase(stack, grace.customer_id(), "GDPR request 118", &erased);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(erased.keys_destroyed(), 1);

  // Leads: the record stays, the person is gone.
  const crm::v1::Lead after = GetLead(stack, grace.lead_id());
  EXPECT_EQ(after.lead_id(), grace.lead_id());
  EXPECT_EQ(after.company(), "Navy");
  EXPECT_EQ(after.contact().first_name(), "");
  EXPECT_EQ(after.contact().email(), "");
  EXPECT_EQ(after.contact().phone(), "");
  EXPECT_EQ(GetLead(stack, ada.lead_id()).contact().email(), "ada@navy.example");
  // Analytics: counts stay, the profile empties.
  ASSERT_TRUE(Eventually([&] {
    return View(stack, grace.customer_id()).profile().email().empty();
  })) << stack.analytics().Log();
  EXPECT_EQ(View(stack, grace.customer_id()).profile().first_name(), "");
  EXPECT_EQ(View(stack, grace.customer_id()).event_count(), events_before);
  EXPECT_EQ(View(stack, ada.customer_id()).profile().email(), "ada@navy.example");

  // On crm.keys.v1 the issuer destroyed the key after the erasure record.
  auto records = ConsumeTopic(
      stack.brokers(), kKeysTopic,
      [&](const auto& e) { return e.customer_id() == grace.customer_id(); },
      // Both records, which are on partitions of their own (keyed by stream).
      [](const auto& seen) {
        bool erasure = false, destroyed = false;
        for (const auto& e : seen) {
          erasure |= e.payload().template Is<crm::v1::CustomerErased>();
          destroyed |= e.payload().template Is<crm::v1::DataKeyDestroyed>();
        }
        return erasure && destroyed;
      });
  bool erasure = false, destroyed = false;
  for (const auto& e : records) {
    erasure |= e.payload().Is<crm::v1::CustomerErased>();
    destroyed |= e.payload().Is<crm::v1::DataKeyDestroyed>();
  }
  EXPECT_TRUE(erasure);
  EXPECT_TRUE(destroyed);
  // Nor is the wrapped key left in any service's data files (a RocksDB
  // delete leaves the old value there until a compaction): the issue
  // record is still on the topic, which the embedded broker does not
  // compact.
  std::string wrapped;
  for (const auto& e : ConsumeTopic(
           stack.brokers(), kKeysTopic,
           [&](const auto& e) {
             return e.customer_id() == grace.customer_id() &&
                    e.payload().template Is<crm::v1::DataKeyIssued>();
           },
           [](const auto& seen) { return !seen.empty(); })) {
    crm::v1::DataKeyIssued issued;
    if (e.payload().UnpackTo(&issued) && !issued.wrapped_key().empty()) {
      wrapped = issued.wrapped_key();
    }
  }
  ASSERT_FALSE(wrapped.empty());
  for (const std::string service : {"leads", "analytics"}) {
    EXPECT_TRUE(Eventually([&] {
      return FilesHolding(stack.dir() + "/" + service, wrapped).empty();
    })) << service
        << ": " << absl::StrJoin(FilesHolding(stack.dir() + "/" + service, wrapped), " ");
  }

  // A rebuild from the topics, which still hold the key's first record
  // (the embedded broker does not compact), reads the others but not her.
  // The key and the erasure are on different partitions of crm.keys.v1;
  // analytics reads that topic to its end before the domain topics, so at
  // no point of the rebuild does her data read back.
  ASSERT_EQ(stack.analytics().Kill(SIGTERM), 0);
  std::filesystem::remove_all(stack.dir() + "/analytics");
  ASSERT_TRUE(stack.Start("analytics"));
  bool exposed = false;
  ASSERT_TRUE(Eventually([&] {
    const crm::v1::Customer360 view = View(stack, grace.customer_id());
    exposed |= !view.profile().email().empty() || !view.profile().last_name().empty();
    return View(stack, ada.customer_id()).profile().email() == "ada@navy.example" &&
           view.event_count() == events_before;
  })) << stack.analytics().Log();
  EXPECT_FALSE(exposed) << "an erased person's data was served during the rebuild";
  // Its export waits for the views to be ready (UNAVAILABLE until then).
  grpc::Status export_status;
  EXPECT_TRUE(Eventually([&] {
    return Export(stack, "analytics", grace.customer_id(), &export_status).erased();
  })) << export_status.error_message();
  const crm::v1::Customer360 rebuilt = View(stack, grace.customer_id());
  EXPECT_EQ(rebuilt.profile().email(), "");
  EXPECT_EQ(rebuilt.profile().last_name(), "");
  EXPECT_EQ(rebuilt.profile().company(), "Navy");

  // A restarted leads service still cannot read her.
  ASSERT_EQ(stack.leads().Kill(SIGTERM), 0);
  ASSERT_TRUE(stack.Start("leads"));
  EXPECT_EQ(GetLead(stack, grace.lead_id()).contact().email(), "");
  EXPECT_EQ(GetLead(stack, ada.lead_id()).contact().email(), "ada@navy.example");
}

// How many partitions of the domain topics the replica whose log this is
// was last given (0 before its first assignment).
int LastDomainAssignment(const std::string& log) {
  static const std::string kLine =
      R"("msg":"partitions assigned","group":"crm-analytics","count":")";
  int count = 0;
  for (size_t at = log.find(kLine); at != std::string::npos; at = log.find(kLine, at + 1)) {
    count = std::atoi(log.c_str() + at + kLine.size());
  }
  return count;
}

TEST(PiiTest, EveryAnalyticsReplicaOpensThePersonalDataOfTheCustomersItHolds) {
  // Replicas share out the domain topics by customer in one group, but key
  // records are partitioned by key: each replica must read all of them.
  Stack stack;
  ASSERT_TRUE(stack.StartBroker());
  ASSERT_TRUE(stack.Start("leads"));
  ASSERT_TRUE(stack.Start("analytics"));
  ASSERT_TRUE(stack.Start("analytics-2"));
  // Capture only once the group has settled with both members: events
  // applied by the first replica before the second joined stay with it.
  // Each replica is the group's only other member, so both having been
  // given domain partitions means a generation with both has formed.
  // Generous: the rebalance for the second member alone waits 9 s on the
  // broker, and more under ASan.
  ASSERT_TRUE(Eventually(
      [&] {
        return LastDomainAssignment(stack.analytics().Log()) > 0 &&
               LastDomainAssignment(stack.service("analytics-2").Log()) > 0;
      },
      absl::Seconds(90)))
      << stack.service("analytics-2").Log();
  std::vector<std::pair<std::string, std::string>> people;  // customer, email
  for (int i = 0; i < 12; ++i) {
    const std::string email = absl::StrCat("ada", i, "@navy.example");
    const auto lead = Capture(stack, absl::StrCat("rep-", i), "Ada", "Lovelacewood", email, "");
    ASSERT_FALSE(lead.customer_id().empty());
    people.emplace_back(lead.customer_id(), email);
  }
  int on_second = 0;
  for (const auto& person : people) {
    // Named copies: lambdas cannot capture structured bindings in clang 14.
    const std::string& customer = person.first;
    const std::string& email = person.second;
    bool second = false;
    // Whichever replica holds her events opens her email; the second one
    // joined later and took half of the partitions over.
    ASSERT_TRUE(Eventually([&] {
      bool held = false;
      for (const char* replica : {"analytics", "analytics-2"}) {
        const crm::v1::Customer360 view = View(stack, customer, replica);
        if (view.event_count() == 0) continue;
        if (view.profile().email() != email) return false;
        held = true;
        second = replica == std::string("analytics-2");
      }
      return held;
    })) << customer
        << "\n"
        << stack.service("analytics-2").Log();
    on_second += second ? 1 : 0;
  }
  EXPECT_GT(on_second, 0) << "the second replica was given no partitions";
}

// Two records of one person merged: the survivor holds what was sealed
// for the merged customer, so erasing the survivor erases that customer too.
TEST(PiiTest, ErasingTheSurvivorOfAMergeErasesTheMergedCustomerEverywhere) {
  Stack stack;
  ASSERT_TRUE(stack.StartBroker());
  ASSERT_TRUE(stack.Start("leads"));
  ASSERT_TRUE(stack.Start("analytics"));
  const auto grace = Capture(stack, "mrg-1", "Grace", "Hopperfield", "grace@navy.example", "");
  const auto hopper =
      Capture(stack, "mrg-2", "Grace", "Hopperfield", "g.hopper@navy.example", "+15551234567");
  const auto ada = Capture(stack, "mrg-3", "Ada", "Lovelacewood", "ada@navy.example", "");
  ASSERT_NE(grace.customer_id(), hopper.customer_id());

  crm::v1::MergeLeadsRequest merge;
  merge.set_request_id("mrg-merge");
  merge.set_survivor_lead_id(grace.lead_id());
  merge.set_merged_lead_id(hopper.lead_id());
  crm::v1::MergeLeadsResponse merged;
  ASSERT_OK(Unary([&](auto* ctx) { return stack.LeadsStub()->MergeLeads(ctx, merge, &merged); }));
  // The survivor took the phone from the merged record, sealed for its customer.
  EXPECT_EQ(GetLead(stack, grace.lead_id()).contact().phone(), "+15551234567");
  ASSERT_TRUE(Eventually([&] {
    return View(stack, hopper.customer_id()).profile().email() == "g.hopper@navy.example";
  })) << stack.analytics().Log();

  // The person's export takes in the record merged into the survivor, as
  // the erasure below does.
  grpc::Status export_status;
  const crm::v1::CustomerExport exported =
      Export(stack, "leads", grace.customer_id(), &export_status);
  ASSERT_TRUE(export_status.ok()) << export_status.error_message();
  ASSERT_EQ(exported.merged_customer_ids_size(), 1);
  EXPECT_EQ(exported.merged_customer_ids(0), hopper.customer_id());
  EXPECT_TRUE(std::any_of(exported.events().begin(), exported.events().end(), [&](const auto& e) {
    crm::v1::LeadCaptured c;
    return e.customer_id() == hopper.customer_id() && e.payload().UnpackTo(&c) &&
           c.contact().email() == "g.hopper@navy.example";
  }));
  EXPECT_TRUE(std::none_of(exported.events().begin(), exported.events().end(),
                           [&](const auto& e) { return e.customer_id() == ada.customer_id(); }));

  crm::v1::EraseCustomerResponse erased;
  ASSERT_OK(Erase(stack, grace.customer_id(), "GDPR request 121", &erased));
  EXPECT_EQ(erased.keys_destroyed(), 2);
  ASSERT_EQ(erased.merged_customer_ids_size(), 1);
  EXPECT_EQ(erased.merged_customer_ids(0), hopper.customer_id());

  const crm::v1::Lead survivor = GetLead(stack, grace.lead_id());
  EXPECT_EQ(survivor.contact().email(), "");
  EXPECT_EQ(survivor.contact().phone(), "") << "sealed for the merged customer";
  EXPECT_EQ(GetLead(stack, hopper.lead_id()).contact().email(), "");
  EXPECT_EQ(GetLead(stack, ada.lead_id()).contact().email(), "ada@navy.example");
  ASSERT_TRUE(Eventually([&] {
    return View(stack, hopper.customer_id()).profile().email().empty();
  })) << stack.analytics().Log();
  // Another person is untouched (their view may land after the erasure's:
  // topics' partitions are consumed in no order between them).
  EXPECT_TRUE(Eventually([&] {
    return View(stack, ada.customer_id()).profile().email() == "ada@navy.example";
  })) << stack.analytics().Log();

  // A restarted leads service reloads the link and the erasure alike.
  ASSERT_EQ(stack.leads().Kill(SIGTERM), 0);
  ASSERT_TRUE(stack.Start("leads"));
  EXPECT_EQ(GetLead(stack, grace.lead_id()).contact().phone(), "");
  crm::v1::EraseCustomerResponse again;
  ASSERT_OK(Erase(stack, grace.customer_id(), "GDPR request 121, repeated", &again));
  ASSERT_EQ(again.merged_customer_ids_size(), 1);
  EXPECT_EQ(again.merged_customer_ids(0), hopper.customer_id());
}

// Erasing the record merged away leaves the survivor's data: the 360 view
// of the group shows the survivor's email, not the erased record's later
// one that no key opens any more.
TEST(PiiTest, ErasingTheMergedAwayCustomerLeavesTheSurvivorsProfileReadable) {
  Stack stack;
  ASSERT_TRUE(stack.StartBroker());
  ASSERT_TRUE(stack.Start("leads"));
  ASSERT_TRUE(stack.Start("analytics"));
  const auto grace = Capture(stack, "mra-1", "Grace", "Hopperfield", "grace@navy.example", "");
  const auto hopper = Capture(stack, "mra-2", "Grace", "Hopperfield", "g.hopper@navy.example", "");
  crm::v1::MergeLeadsRequest merge;
  merge.set_request_id("mra-merge");
  merge.set_survivor_lead_id(grace.lead_id());
  merge.set_merged_lead_id(hopper.lead_id());
  crm::v1::MergeLeadsResponse merged;
  ASSERT_OK(Unary([&](auto* ctx) { return stack.LeadsStub()->MergeLeads(ctx, merge, &merged); }));
  // The later capture's email is the group's while it can be read.
  ASSERT_TRUE(Eventually([&] {
    return View(stack, grace.customer_id()).profile().email() == "g.hopper@navy.example";
  })) << stack.analytics().Log();

  crm::v1::EraseCustomerResponse erased;
  ASSERT_OK(Erase(stack, hopper.customer_id(), "GDPR request 122", &erased));
  EXPECT_EQ(GetLead(stack, grace.lead_id()).contact().email(), "grace@navy.example");
  EXPECT_TRUE(Eventually([&] {
    return View(stack, grace.customer_id()).profile().email() == "grace@navy.example";
  })) << View(stack, grace.customer_id()).profile().email()
      << "\n"
      << stack.analytics().Log();
}

TEST(PiiTest, ExportReturnsWhatEachServiceHoldsOnThePersonOpenedAndEmptyAfterErasure) {
  Stack stack;
  ASSERT_TRUE(stack.StartBroker());
  ASSERT_TRUE(stack.Start("leads"));
  ASSERT_TRUE(stack.Start("analytics"));
  const auto grace =
      Capture(stack, "exp-1", "Grace", "Hopperfield", "grace@navy.example", "+15551234567");
  // A second lead of the same person (same email): one customer, two leads.
  const auto again =
      Capture(stack, "exp-2", "Grace", "Hopperfield", "grace@navy.example", "+15551234567");
  const auto ada =
      Capture(stack, "exp-3", "Ada", "Lovelacewood", "ada@navy.example", "+15557654321");
  ASSERT_EQ(again.customer_id(), grace.customer_id());

  grpc::Status st;
  EXPECT_TRUE(Export(stack, "leads", "", &st).events().empty());
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message(), "customer_id: required");
  Export(stack, "leads", grace.customer_id(), &st,
         auth::Principal{"analyst-1", {auth::kRoleAnalyst}, ""});
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);

  crm::v1::CustomerExport held = Export(stack, "leads", grace.customer_id(), &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(held.service(), "leads");
  EXPECT_EQ(held.customer_id(), grace.customer_id());
  EXPECT_FALSE(held.erased());
  std::set<std::string> leads;
  for (const auto& e : held.events()) {
    EXPECT_EQ(e.customer_id(), grace.customer_id()) << e.type();
    EXPECT_FALSE(pii::IsKeyRecordStream(e.stream())) << "key material is not personal data";
    crm::v1::LeadCaptured captured;
    if (e.payload().UnpackTo(&captured) && e.payload().Is<crm::v1::LeadCaptured>()) {
      leads.insert(captured.lead_id());
      EXPECT_EQ(captured.contact().email(), "grace@navy.example");
      EXPECT_EQ(captured.contact().last_name(), "Hopperfield");
    }
  }
  EXPECT_EQ(leads, (std::set<std::string>{grace.lead_id(), again.lead_id()}));
  EXPECT_FALSE(absl::StrContains(held.SerializeAsString(), "ada@navy.example"));
  // Analytics emitted nothing about her; what it holds is her 360 view,
  // built from the leads' events, with what it derived (stage, scores).
  auto derived_view = [&](const std::string& customer_id) {
    crm::v1::Customer360 view;
    EXPECT_TRUE(Eventually([&] {
      const crm::v1::CustomerExport e = Export(stack, "analytics", customer_id, &st);
      if (!st.ok() || e.derived_size() != 1) return false;
      EXPECT_TRUE(e.events().empty());
      return e.derived(0).UnpackTo(&view) && view.lead_ids_size() == 2;
    })) << customer_id
        << ": " << st.error_message() << " " << view.ShortDebugString();
    return view;
  };
  crm::v1::Customer360 view = derived_view(grace.customer_id());
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(view.customer_id(), grace.customer_id());
  EXPECT_EQ(view.profile().email(), "grace@navy.example");
  EXPECT_EQ(view.lifecycle_stage(), crm::v1::LIFECYCLE_STAGE_LEAD);
  EXPECT_EQ(view.timeline_size(), 0) << "its events are in the leads export";
  EXPECT_EQ(Export(stack, "analytics", "cus_never_seen", &st).derived_size(), 0);
  EXPECT_TRUE(st.ok()) << st.error_message();

  // crmctl asks every service; one that does not answer fails the export.
  const std::string ctl =
      absl::StrCat(CtlCommand(), " export ", grace.customer_id(),
                   " --leads=", stack.Target("leads"), " --analytics=", stack.Target("analytics"));
  const std::string partial = RunCommand(ctl + " --sales=127.0.0.1:1 --service-desk=127.0.0.1:1");
  EXPECT_TRUE(absl::StrContains(partial, "grace@navy.example")) << partial;
  EXPECT_NE(std::system(
                (ctl + " --sales=127.0.0.1:1 --service-desk=127.0.0.1:1 >/dev/null 2>&1").c_str()),
            0);

  // An erasure that found no key here says so, not "{}".
  const std::string none =
      RunCommand(absl::StrCat(CtlCommand(), " erase cus_never_seen --reason='GDPR request 118'",
                              " --leads=", stack.Target("leads")));
  EXPECT_TRUE(absl::StrContains(none, "\"keys_destroyed\":0")) << none;

  crm::v1::EraseCustomerResponse erased;
  ASSERT_TRUE(Erase(stack, grace.customer_id(), "GDPR request 119", &erased).ok());
  held = Export(stack, "leads", grace.customer_id(), &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(held.erased());
  int captured_after = 0;
  for (const auto& e : held.events()) {
    crm::v1::LeadCaptured captured;
    if (!e.payload().Is<crm::v1::LeadCaptured>() || !e.payload().UnpackTo(&captured)) continue;
    ++captured_after;
    EXPECT_EQ(captured.contact().email(), "");
    EXPECT_EQ(captured.contact().first_name(), "");
    EXPECT_EQ(captured.company(), "Navy") << "what is not personal data stays";
  }
  EXPECT_EQ(captured_after, 2);
  EXPECT_FALSE(absl::StrContains(held.SerializeAsString(), "Hopperfield"));
  EXPECT_TRUE(
      Eventually([&] { return Export(stack, "analytics", grace.customer_id(), &st).erased(); }));
  view = derived_view(grace.customer_id());
  EXPECT_EQ(view.profile().email(), "");
  EXPECT_EQ(view.profile().last_name(), "");
  EXPECT_EQ(view.lead_ids_size(), 2) << "ids and counts stay";
  EXPECT_FALSE(Export(stack, "leads", ada.customer_id(), &st).erased());
}

// A person with many large leads: the export comes in pages a default
// client can take, opened, each going on where the last one ended.
TEST(PiiTest, ALargeExportComesInPages) {
  Stack stack;
  ASSERT_TRUE(stack.StartBroker());
  ASSERT_TRUE(stack.Start("leads"));
  constexpr int kLeads = 70;
  std::string customer;
  for (int i = 0; i < kLeads; ++i) {
    crm::v1::CaptureLeadRequest req;
    req.set_request_id(absl::StrCat("big-", i));
    req.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
    req.mutable_contact()->set_email("many@navy.example");
    for (int a = 0; a < 50; ++a)
      (*req.mutable_attributes())[absl::StrCat("k", a)] = std::string(1000, 'v');
    crm::v1::CaptureLeadResponse resp;
    ASSERT_OK(Unary([&](auto* c) { return stack.LeadsStub()->CaptureLead(c, req, &resp); }));
    customer = resp.customer_id();
  }
  auto admin = crm::v1::AdminService::NewStub(stack.Channel("leads"));
  crm::v1::ExportCustomerRequest req;
  req.set_customer_id(customer);
  std::set<std::string> event_ids;
  std::string first_token;
  int captured = 0;
  int pages = 0;
  do {
    crm::v1::CustomerExport page;
    ASSERT_OK(Unary([&](auto* c) { return admin->ExportCustomer(c, req, &page); }));
    EXPECT_LE(page.ByteSizeLong(), kMaxReplyBytes);
    EXPECT_EQ(page.customer_id(), customer);
    for (const auto& e : page.events()) {
      EXPECT_TRUE(event_ids.insert(e.event_id()).second) << "twice: " << e.event_id();
      crm::v1::LeadCaptured lc;
      if (e.payload().UnpackTo(&lc)) {
        ++captured;
        EXPECT_EQ(lc.contact().email(), "many@navy.example") << "opened";
      }
    }
    if (pages == 0) first_token = page.next_page_token();
    req.set_page_token(page.next_page_token());
    ++pages;
  } while (!req.page_token().empty() && pages < 20);
  EXPECT_EQ(captured, kLeads);
  EXPECT_GT(pages, 1);

  req.set_page_token("not-a-position");
  crm::v1::CustomerExport bad;
  grpc::Status st = Unary([&](auto* c) { return admin->ExportCustomer(c, req, &bad); });
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message().rfind("page_token: not a token of this query", 0), 0u)
      << st.error_message();
  // Nor another service's export of the same customer: a position in the
  // leads log is none in the sales log.
  ASSERT_TRUE(stack.Start("sales"));
  auto sales_admin = crm::v1::AdminService::NewStub(stack.Channel("sales"));
  req.set_page_token(first_token);
  st = Unary([&](auto* c) { return sales_admin->ExportCustomer(c, req, &bad); });
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message().rfind("page_token: not a token of this query", 0), 0u)
      << st.error_message();
  // A token of this customer's export continues no other customer's: it
  // would have skipped their records up to that log position.
  req.set_customer_id("cus_someone_else");
  req.set_page_token(first_token);
  st = Unary([&](auto* c) { return admin->ExportCustomer(c, req, &bad); });
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message().rfind("page_token: not a token of this query", 0), 0u)
      << st.error_message();
}

// Free text typed about a person (lead attributes and needs, activity
// subjects, notes, ticket text) is personal data like the contact fields:
// ciphertext on every topic, plaintext through the APIs, gone after erasure.
TEST(PiiTest, FreeTextIsSealedInEveryServiceAndErasedWithThePerson) {
  Stack stack;
  ASSERT_TRUE(stack.StartBroker());
  for (const char* service : {"leads", "sales", "service-desk", "analytics"}) {
    ASSERT_TRUE(stack.Start(service)) << service;
  }
  // Every text carries this word, so a plaintext copy anywhere is found.
  const std::string kMark = "Quixotry";
  const std::string diet = kMark + ": vegan, nut allergy";
  const std::string need = kMark + " clinic needs record storage";
  const std::string visit = kMark + " visit at her home";
  const std::string call = kMark + " call about her divorce";
  const std::string ticket_subject = kMark + " pacemaker order is late";
  const std::string reply = kMark + " we are sorry, Grace";

  crm::v1::CaptureLeadRequest capture;
  capture.set_request_id("free-1");
  capture.set_channel(crm::v1::LEAD_CHANNEL_WEB_FORM);
  capture.set_company("Navy");
  capture.mutable_contact()->set_email("grace@navy.example");
  (*capture.mutable_attributes())["diet"] = diet;
  capture.mutable_bant()->set_need(need);
  crm::v1::CaptureLeadResponse lead;
  ASSERT_OK(Unary([&](auto* c) { return stack.LeadsStub()->CaptureLead(c, capture, &lead); }));
  const std::string customer = lead.customer_id();
  crm::v1::RecordLeadActivityRequest activity;
  activity.set_request_id("free-2");
  activity.set_lead_id(lead.lead_id());
  activity.set_type(crm::v1::LEAD_ACTIVITY_TYPE_MEETING_HELD);
  activity.set_detail(visit);
  crm::v1::Lead recorded;
  ASSERT_OK(Unary(
      [&](auto* c) { return stack.LeadsStub()->RecordLeadActivity(c, activity, &recorded); }));

  auto sales = crm::v1::SalesService::NewStub(stack.Channel("sales"));
  crm::v1::OpenCustomerRequest open_customer;
  open_customer.set_request_id("free-3");
  open_customer.set_customer_id(customer);
  open_customer.set_name("Navy");
  open_customer.set_owner_id("rep-1");
  crm::v1::Customer account;
  ASSERT_OK(Unary([&](auto* c) { return sales->OpenCustomer(c, open_customer, &account); }));
  crm::v1::LogActivityRequest log_call;
  log_call.set_request_id("free-4");
  log_call.set_customer_id(customer);
  log_call.set_kind(crm::v1::ACTIVITY_KIND_CALL);
  log_call.set_subject(call);
  log_call.set_notes(call);
  crm::v1::Activity logged;
  ASSERT_OK(Unary([&](auto* c) { return sales->LogActivity(c, log_call, &logged); }));
  EXPECT_EQ(logged.subject(), call) << "the caller gets back what it sent";

  auto desk = crm::v1::ServiceDeskService::NewStub(stack.Channel("service-desk"));
  crm::v1::OpenTicketRequest open_ticket;
  open_ticket.set_request_id("free-5");
  open_ticket.set_customer_id(customer);
  open_ticket.set_channel(crm::v1::TICKET_CHANNEL_EMAIL);
  open_ticket.set_subject(ticket_subject);
  open_ticket.set_description(ticket_subject);
  open_ticket.set_product("pacer");
  open_ticket.set_priority(crm::v1::TICKET_PRIORITY_HIGH);
  crm::v1::Ticket ticket;
  ASSERT_OK(Unary([&](auto* c) { return desk->OpenTicket(c, open_ticket, &ticket); }));
  crm::v1::ReplyToTicketRequest reply_request;
  reply_request.set_request_id("free-6");
  reply_request.set_ticket_id(ticket.ticket_id());
  reply_request.set_author_type(crm::v1::AUTHOR_TYPE_AGENT);
  reply_request.set_body(reply);
  ASSERT_OK(Unary([&](auto* c) { return desk->ReplyToTicket(c, reply_request, &ticket); }));

  // The topics carry none of it.
  for (const char* topic : {kLeadsTopic, kSalesTopic, kServiceDeskTopic}) {
    const size_t wanted = 2;  // at least the two commands above on each
    auto events = ConsumeTopic(
        stack.brokers(), topic, [&](const auto& e) { return e.customer_id() == customer; },
        [&](const auto& seen) { return seen.size() >= wanted; });
    EXPECT_GE(events.size(), wanted) << topic;
    for (const auto& e : events) {
      EXPECT_FALSE(absl::StrContains(e.SerializeAsString(), kMark)) << topic << " " << e.type();
    }
  }

  // The APIs answer in plaintext.
  auto read_lead = [&] { return GetLead(stack, lead.lead_id()); };
  EXPECT_EQ(read_lead().attributes().at("diet"), diet);
  EXPECT_EQ(read_lead().bant().need(), need);
  auto read_activities = [&] {
    crm::v1::ListActivitiesRequest req;
    req.set_customer_id(customer);
    crm::v1::ListActivitiesResponse resp;
    grpc::ClientContext ctx;
    EXPECT_TRUE(sales->ListActivities(&ctx, req, &resp).ok());
    return resp;
  };
  ASSERT_EQ(read_activities().activities_size(), 1);
  EXPECT_EQ(read_activities().activities(0).subject(), call);
  EXPECT_EQ(read_activities().activities(0).notes(), call);
  auto read_ticket = [&] {
    crm::v1::GetTicketRequest req;
    req.set_ticket_id(ticket.ticket_id());
    crm::v1::TicketDetails details;
    grpc::ClientContext ctx;
    EXPECT_TRUE(desk->GetTicket(&ctx, req, &details).ok());
    return details;
  };
  EXPECT_EQ(read_ticket().ticket().subject(), ticket_subject);
  EXPECT_EQ(read_ticket().ticket().description(), ticket_subject);
  ASSERT_EQ(read_ticket().messages_size(), 1);
  EXPECT_EQ(read_ticket().messages(0).body(), reply);
  // Analytics learns every service's key and shows the texts as details.
  auto details = [&] {
    std::set<std::string> out;
    const crm::v1::Customer360 view = View(stack, customer);
    for (const auto& entry : view.timeline()) {
      if (!entry.detail().empty()) out.insert(entry.detail());
      EXPECT_FALSE(absl::StrContains(entry.summary(), kMark)) << entry.summary();
    }
    return out;
  };
  ASSERT_TRUE(Eventually([&] {
    return details() == std::set<std::string>{call, ticket_subject};
  })) << View(stack, customer).DebugString();

  crm::v1::EraseCustomerResponse erased;
  ASSERT_TRUE(Erase(stack, customer, "GDPR request 120", &erased).ok());
  EXPECT_EQ(read_lead().attributes().at("diet"), "") << "the attribute stays, its value goes";
  EXPECT_EQ(read_lead().bant().need(), "");
  EXPECT_EQ(read_lead().company(), "Navy");
  // The other services erase when the record reaches them.
  ASSERT_TRUE(Eventually([&] {
    const auto activities = read_activities();
    return activities.activities_size() == 1 && activities.activities(0).subject().empty();
  })) << stack.service("sales").Log();
  EXPECT_EQ(read_activities().activities(0).notes(), "");
  ASSERT_TRUE(Eventually([&] { return read_ticket().ticket().subject().empty(); }))
      << stack.service("service-desk").Log();
  EXPECT_EQ(read_ticket().ticket().description(), "");
  EXPECT_EQ(read_ticket().messages(0).body(), "");
  EXPECT_EQ(read_ticket().ticket().product(), "pacer");
  ASSERT_TRUE(Eventually([&] { return details().empty(); })) << stack.analytics().Log();
}

TEST(PiiTest, MasterKeyRotationKeepsPersonalDataReadableAndDedupeWorking) {
  const std::string key_a(64, 'a');
  const std::string key_b = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  Stack stack;
  ASSERT_TRUE(stack.StartBroker());
  ASSERT_TRUE(stack.Start("leads", {"--master-key=" + key_a}));
  const auto grace =
      Capture(stack, "rot-1", "Grace", "Hopperfield", "grace@navy.example", "+15551234567");
  ASSERT_FALSE(grace.duplicate());
  ASSERT_EQ(stack.leads().Kill(SIGTERM), 0);

  // The new key alone: the stored keys do not unwrap, leads refuses to start.
  Process refused({CRM_LEADS_BIN, "--listen=" + stack.LeadsTarget(),
                   "--data-dir=" + stack.dir() + "/leads", "--brokers=" + stack.brokers(),
                   std::string("--jwt-hs256-key=") + auth::kDevHs256Key, "--master-key=" + key_b},
                  {}, stack.dir() + "/leads-refused.log");
  ASSERT_TRUE(refused.Start());
  EXPECT_EQ(refused.Wait(absl::Seconds(20)), 1);
  EXPECT_TRUE(absl::StrContains(refused.Log(), "does not unwrap")) << refused.Log();

  // New key plus the previous one: re-wrapped at start-up.
  ASSERT_TRUE(stack.Start("leads", {"--master-key=" + key_b, "--previous-master-keys=" + key_a}));
  EXPECT_TRUE(absl::StrContains(stack.leads().Log(), "re-wrapped")) << stack.leads().Log();
  ASSERT_EQ(stack.leads().Kill(SIGTERM), 0);

  // The new key alone is enough from now on.
  ASSERT_TRUE(stack.Start("leads", {"--master-key=" + key_b})) << stack.leads().Log();
  const crm::v1::Lead lead = GetLead(stack, grace.lead_id());
  EXPECT_EQ(lead.contact().email(), "grace@navy.example");
  EXPECT_EQ(lead.contact().last_name(), "Hopperfield");
  // The blind index key survived: the same person is found again.
  const auto again =
      Capture(stack, "rot-2", "Grace", "Hopperfield", "grace@navy.example", "+15550000000");
  EXPECT_TRUE(again.duplicate());
  EXPECT_EQ(again.duplicate_of_lead_id(), grace.lead_id());
  EXPECT_EQ(again.customer_id(), grace.customer_id());

  // crm.keys.v1 carries the re-wrap after the first record (still there:
  // the embedded broker does not compact). Analytics, started with the new
  // key only, parks the old wrapping and reads her through the new one.
  auto issued = ConsumeTopic(
      stack.brokers(), kKeysTopic,
      [&](const auto& e) {
        return e.customer_id() == grace.customer_id() &&
               e.payload().template Is<crm::v1::DataKeyIssued>();
      },
      [](const auto& seen) { return seen.size() >= 2; });
  ASSERT_EQ(issued.size(), 2u);
  EXPECT_EQ(issued[1].stream(), issued[0].stream());
  EXPECT_EQ(issued[1].stream_version(), 2);
  ASSERT_TRUE(stack.Start("analytics", {"--master-key=" + key_b}));
  EXPECT_TRUE(Eventually([&] {
    return View(stack, grace.customer_id()).profile().email() == "grace@navy.example";
  })) << stack.analytics().Log();
  // So does an offline rebuild: the old wrapping fails, the re-wrap gives
  // the key, and nothing is missing at the end.
  const std::string rebuilt =
      RunCommand(absl::StrCat(CtlCommand(), " rebuild analytics --data-dir=", stack.dir(),
                              "/analytics-rebuilt --brokers=", stack.brokers(),
                              " --master-key=", key_b, " 2>&1; echo exit=$?"));
  EXPECT_TRUE(absl::StrContains(rebuilt, "rebuilt analytics from")) << rebuilt;
  EXPECT_TRUE(absl::StrContains(rebuilt, "exit=0")) << rebuilt;
}

}  // namespace
}  // namespace crm::testing
