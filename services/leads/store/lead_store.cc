#include "services/leads/store/lead_store.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/common/status_macros.h"

namespace crm::leads {
namespace {

constexpr char kContacts[] = "contacts";  // "email:<e>" | "phone:<p>" -> lead \n customer

std::string EmailKey(const std::string& email) { return absl::StrCat("email:", email); }
std::string PhoneKey(const std::string& phone) { return absl::StrCat("phone:", phone); }

std::optional<ContactMatch> Decode(const std::optional<std::string>& raw) {
  if (!raw.has_value()) return std::nullopt;
  std::pair<std::string, std::string> parts = absl::StrSplit(*raw, absl::MaxSplits('\n', 1));
  return ContactMatch{parts.first, parts.second};
}

}  // namespace

absl::StatusOr<std::unique_ptr<LeadStore>> LeadStore::Open(const std::string& path) {
  CRM_ASSIGN_OR_RETURN(auto events, EventStore::Open(path, {kContacts}));
  return std::make_unique<LeadStore>(std::move(events));
}

absl::StatusOr<std::optional<ContactMatch>> LeadStore::FindContact(
    const crm::v1::Contact& contact) const {
  if (!contact.email().empty()) {
    CRM_ASSIGN_OR_RETURN(auto raw, events_->db().Get(kContacts, EmailKey(contact.email())));
    if (raw.has_value()) return Decode(raw);
  }
  if (!contact.phone().empty()) {
    CRM_ASSIGN_OR_RETURN(auto raw, events_->db().Get(kContacts, PhoneKey(contact.phone())));
    if (raw.has_value()) return Decode(raw);
  }
  return std::nullopt;
}

absl::StatusOr<std::vector<ProjectionWrite>> LeadStore::ContactIndexWrites(
    const crm::v1::Lead& lead) const {
  std::vector<ProjectionWrite> writes;
  const std::string value = absl::StrCat(lead.lead_id(), "\n", lead.customer_id());
  for (const std::string& key :
       {lead.contact().email().empty() ? "" : EmailKey(lead.contact().email()),
        lead.contact().phone().empty() ? "" : PhoneKey(lead.contact().phone())}) {
    if (key.empty()) continue;
    CRM_ASSIGN_OR_RETURN(auto existing, events_->db().Get(kContacts, key));
    if (!existing.has_value()) writes.push_back({kContacts, key, value});
  }
  return writes;
}

absl::StatusOr<crm::v1::Lead> LeadStore::GetLead(const std::string& lead_id) const {
  auto state = events_->LoadState(LeadStream(lead_id));
  if (absl::IsNotFound(state.status())) {
    return absl::NotFoundError(absl::StrCat("lead ", lead_id, " not found"));
  }
  if (!state.ok()) return state.status();
  crm::v1::Lead lead;
  if (!lead.ParseFromString(state->state)) {
    return absl::DataLossError(absl::StrCat("corrupt state of lead ", lead_id));
  }
  return lead;
}

}  // namespace crm::leads
