#pragma once

#include "crm/v1/leads.pb.h"

namespace crm::leads {

// The lead score, a pure function of what is known about the lead, so a
// rebuild from events gives the same score. Each part gives 0 to 20
// points:
//   budget     BANT budget in major units (currency-blind): >=100k 20,
//              >=10k 15, >=1k 10, any 5
//   authority  decision maker 20; executive title (a word of it: chief,
//              founder, cofounder, president, vp, svp, evp, director, head,
//              ceo, cto, cfo, coo, cio, cmo, ciso, cro, cpo; or owner or
//              partner, not after a function ("Product Owner") nor before
//              a role about partners ("Partner Manager")) 15; manager,
//              lead, supervisor, principal or avp 10; another title 5
//   need       stated need 10, plus 5 per product interest up to two
//   timeline   within a month 20, a quarter 15, a year 10
//   engagement capture channel (in person 5, inbound 3, other 1) plus the
//              activity points, capped at 20
crm::v1::LeadScore ComputeScore(const crm::v1::Lead& lead);

bool SameScore(const crm::v1::LeadScore& a, const crm::v1::LeadScore& b);

}  // namespace crm::leads
