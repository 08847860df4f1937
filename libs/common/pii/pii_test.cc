#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "crm/v1/leads.pb.h"
#include "crm/v1/pii.pb.h"
#include "libs/common/auth/dev_key.h"
#include "libs/common/contact_fields.h"
#include "libs/common/pii/cipher.h"
#include "libs/common/pii/field_sealer.h"
#include "libs/common/pii/key_vault.h"
#include "libs/common/testing/temp_dir.h"

namespace crm::pii {
namespace {

Key Master() { return *KeyFromHex(auth::kDevPiiMasterKeyHex); }

EventContext Ctx() {
  EventContext ctx;
  ctx.actor = "admin-1";
  ctx.occurred_at = absl::Now();
  return ctx;
}

TEST(CipherTest, SealOpensOnlyWithTheSameKeyAndAssociatedData) {
  const Key key = RandomKey();
  const std::string sealed = Seal(key, "ann@example.com", "k1");
  EXPECT_FALSE(absl::StrContains(sealed, "ann@example.com"));
  EXPECT_NE(sealed, Seal(key, "ann@example.com", "k1")) << "a fresh nonce per seal";
  EXPECT_EQ(*Open(key, sealed, "k1"), "ann@example.com");
  EXPECT_TRUE(absl::IsDataLoss(Open(key, sealed, "k2").status()));
  EXPECT_TRUE(absl::IsDataLoss(Open(RandomKey(), sealed, "k1").status()));
  std::string tampered = sealed;
  tampered[kNonceSize] ^= 1;
  EXPECT_TRUE(absl::IsDataLoss(Open(key, tampered, "k1").status()));
  EXPECT_TRUE(absl::IsDataLoss(Open(key, "short", "k1").status()));
}

// AES-256-GCM on a context of its own, as any other reader would open it.
std::optional<std::string> OpenElsewhere(const Key& key, const std::string& sealed,
                                         const std::string& aad) {
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      &EVP_CIPHER_CTX_free);
  const auto* in = reinterpret_cast<const unsigned char*>(sealed.data());
  const int n = static_cast<int>(sealed.size() - kNonceSize - kTagSize);
  std::string out(n, '\0');
  std::string tag = sealed.substr(kNonceSize + n);
  int len = 0;
  if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), in) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len,
                        reinterpret_cast<const unsigned char*>(aad.data()),
                        static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len,
                        in + kNonceSize, n) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagSize, tag.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), nullptr, &len) != 1) {
    return std::nullopt;
  }
  return out;
}

// A thread's cipher context keeps the last key set: seals and opens that
// alternate between keys, or repeat one, or fail in between, must each
// use their own key and nonce.
TEST(CipherTest, AlternatingAndRepeatedKeysEachSealAndOpenWithTheirOwn) {
  const Key a = RandomKey();
  const Key b = RandomKey();
  struct Sealed {
    const Key* key;
    std::string plain;
    std::string sealed;
  };
  std::vector<Sealed> values;
  for (const Key* key : {&a, &a, &b, &a, &b, &b}) {
    std::string plain = absl::StrCat("value-", values.size(), "@example.com");
    values.push_back({key, plain, Seal(*key, plain, "k")});
  }
  for (const auto& v : values) {
    EXPECT_EQ(OpenElsewhere(*v.key, v.sealed, "k"), v.plain);
  }
  for (size_t i : {0, 1, 2, 3, 4, 5, 3, 3, 0, 5}) {
    const Sealed& v = values[i];
    const Key& other = v.key == &a ? b : a;
    EXPECT_TRUE(absl::IsDataLoss(Open(other, v.sealed, "k").status())) << i;
    EXPECT_EQ(*Open(*v.key, v.sealed, "k"), v.plain) << i;
    EXPECT_EQ(*Open(*v.key, v.sealed, "k"), v.plain) << i;
    EXPECT_TRUE(absl::IsDataLoss(Open(*v.key, v.sealed, "other aad").status())) << i;
  }
}

// Nonces come from a per-thread block of DRBG output: no two seals, on
// one thread or across threads, may share one, and each thread's reused
// cipher context must take each call's key.
TEST(CipherTest, NoncesNeverRepeatAcrossSealsAndThreads) {
  constexpr int kThreads = 4;
  constexpr int kSeals = 3000;  // several pool refills per thread
  std::vector<std::vector<std::string>> sealed(kThreads);
  std::vector<Key> keys = {RandomKey(), RandomKey()};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kSeals; ++i) {
        sealed[t].push_back(Seal(keys[i % 2], absl::StrCat("v", i), "aad"));
        RandomKey();  // other draws from the same pool in between
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<std::string> nonces;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kSeals; ++i) {
      nonces.insert(sealed[t][i].substr(0, kNonceSize));
      ASSERT_EQ(*Open(keys[i % 2], sealed[t][i], "aad"), absl::StrCat("v", i));
      ASSERT_FALSE(Open(keys[(i + 1) % 2], sealed[t][i], "aad").ok());
    }
  }
  EXPECT_EQ(nonces.size(), static_cast<size_t>(kThreads * kSeals));
}

// Reference values from Python's hmac module. Keys alternate between
// calls, as blind indexes and key derivation interleave on one thread.
TEST(CipherTest, HmacIsHmacSha256WhicheverKeyCameBefore) {
  Key counting;
  for (size_t i = 0; i < counting.size(); ++i) counting[i] = static_cast<uint8_t>(i);
  Key aa;
  aa.fill(0xaa);
  for (int round = 0; round < 2; ++round) {
    EXPECT_EQ(absl::BytesToHexString(Hmac(counting, "email:ada@navy.example")),
              "5f453ff22ee9d652b5e7e2898bb17a715885cf15a465869ad6980931a2b8f0ff");
    EXPECT_EQ(absl::BytesToHexString(Hmac(aa, "email:ada@navy.example")),
              "d22cb0fdbd194101db5b023c30317d509fda693e9fd633d21dd75c2f473de752");
    EXPECT_EQ(absl::BytesToHexString(Hmac(counting, "")),
              "d38b42096d80f45f826b44a9d5607de72496a415d3f4a1a8c88e3bb9da8dc1cb");
  }
}

// Keys of any length (HS256 token secrets); values from RFC 4231 and
// Python's hmac. An empty key after another must not reuse the one before.
TEST(CipherTest, HmacTakesKeysOfAnyLength) {
  for (int round = 0; round < 2; ++round) {
    EXPECT_EQ(
        absl::BytesToHexString(Hmac(absl::string_view("Jefe"), "what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    EXPECT_EQ(absl::BytesToHexString(Hmac(absl::string_view(), "")),
              "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
    EXPECT_EQ(
        absl::BytesToHexString(Hmac(std::string(131, '\xaa'),
                                    "Test Using Larger Than Block-Size Key - Hash Key First")),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  }
}

TEST(CipherTest, KeyFromHexWantsExactly64HexDigits) {
  EXPECT_TRUE(KeyFromHex(std::string(64, 'a')).ok());
  EXPECT_TRUE(KeyFromHex(std::string(64, 'a') + "\n").ok());
  EXPECT_FALSE(KeyFromHex(std::string(63, 'a')).ok());
  EXPECT_FALSE(KeyFromHex(std::string(64, 'g')).ok());
}

// A service's database with the families a vault and a subscriber need.
struct ServiceDb {
  explicit ServiceDb(const std::string& path, const Key& master, const std::string& issuer) {
    std::vector<std::string> families = Subscriber::Families();
    families.push_back(KeyVault::kFamily);
    store = *EventStore::Open(path, families);
    vault = *KeyVault::Open(store->db(), store.get(), master, issuer);
  }
  // Feeds every key record of `from`'s log to this service's vault, the way
  // its subscriber would from crm.keys.v1.
  absl::Status Consume(const EventStore& from, const std::string& stream) {
    ProjectionTxn txn(store->db());
    auto events = from.ReadStream(stream);
    if (!events.ok()) return events.status();
    for (const auto& e : *events) {
      if (auto st = vault->ApplyRecord(e, txn); !st.ok()) return st;
    }
    return txn.Commit();
  }
  std::unique_ptr<EventStore> store;
  std::unique_ptr<KeyVault> vault;
};

crm::v1::Contact Ann() {
  crm::v1::Contact c;
  c.set_first_name("Ann");
  c.set_last_name("Lee");
  c.set_email("ann@example.com");
  c.set_phone("+4930123456");
  c.set_title("CTO");
  return c;
}

TEST(FieldSealerTest, SealsOnlyPiiFieldsAndOpensThemBack) {
  testing::TempDir dir;
  ServiceDb leads(dir.Sub("leads"), Master(), "crm/leads");
  auto key = leads.vault->EnsureKey("cus_1", Ctx());
  ASSERT_TRUE(key.ok()) << key.status();

  crm::v1::CaptureLeadRequest request;
  *request.mutable_contact() = Ann();
  request.set_company("Acme");
  SealFields(request, *key);
  const crm::v1::Contact& sealed = request.contact();
  for (const std::string* v :
       {&sealed.first_name(), &sealed.last_name(), &sealed.email(), &sealed.phone()}) {
    EXPECT_TRUE(IsSealed(*v)) << *v;
  }
  EXPECT_EQ(sealed.title(), "CTO") << "not personal data";
  EXPECT_EQ(request.company(), "Acme");
  const std::string once = request.SerializeAsString();
  SealFields(request, *key);
  EXPECT_EQ(request.SerializeAsString(), once) << "sealed values are not sealed twice";

  EXPECT_FALSE(Unreadable(sealed.email(), *leads.vault));
  EXPECT_FALSE(Unreadable("ann@example.com", *leads.vault)) << "plaintext reads as it is";
  // Another vault holds no key of cus_1: what it would open to nothing.
  ServiceDb desk(dir.Sub("desk"), Master(), "crm/service-desk");
  EXPECT_TRUE(Unreadable(sealed.email(), *desk.vault));
  EXPECT_TRUE(Unreadable("pii1.garbage", *leads.vault));

  OpenFields(request, *leads.vault);
  EXPECT_EQ(request.contact().SerializeAsString(), Ann().SerializeAsString());
}

TEST(FieldSealerTest, SealsTheValuesOfMarkedMapsAndFreeText) {
  testing::TempDir dir;
  ServiceDb leads(dir.Sub("leads"), Master(), "crm/leads");
  auto key = leads.vault->EnsureKey("cus_1", Ctx());
  ASSERT_TRUE(key.ok()) << key.status();
  crm::v1::LeadCaptured captured;
  (*captured.mutable_attributes())["diet"] = "vegan";
  (*captured.mutable_attributes())["empty"] = "";
  captured.mutable_bant()->set_need("storage for patient records");
  captured.set_region("emea");
  SealFields(captured, *key);
  EXPECT_TRUE(IsSealed(captured.attributes().at("diet")));
  EXPECT_EQ(captured.attributes().at("empty"), "") << "nothing to hide";
  EXPECT_TRUE(IsSealed(captured.bant().need()));
  EXPECT_EQ(captured.region(), "emea");
  // Through the wire format too: what a consumer parses opens the same.
  crm::v1::LeadCaptured parsed;
  ASSERT_TRUE(parsed.ParseFromString(captured.SerializeAsString()));
  OpenFields(parsed, *leads.vault);
  EXPECT_EQ(parsed.attributes().at("diet"), "vegan");
  EXPECT_EQ(parsed.bant().need(), "storage for patient records");

  ClearFields(captured);
  EXPECT_EQ(captured.attributes().at("diet"), "");
  EXPECT_EQ(captured.bant().need(), "");
  EXPECT_EQ(captured.region(), "emea");
}

// A sealed value copied from a topic into a request would be stored as is
// and opened for the caller: requests refuse it wherever it sits.
TEST(FieldSealerTest, RequestsRefuseSealedValuesNamingTheField) {
  crm::v1::ImportLeadsRequest request;
  request.set_import_id("imp-1");
  auto* row = request.add_rows();
  row->mutable_contact()->set_first_name("Ada");
  (*row->mutable_attributes())["booth"] = "B12";
  row->add_product_interests("crm");
  EXPECT_TRUE(RefuseSealedInput(request).ok());

  auto expect_refused = [](const google::protobuf::Message& m, const std::string& field) {
    auto st = RefuseSealedInput(m);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_TRUE(absl::StartsWith(st.message(), field + ": ")) << st;
  };
  auto* second = request.add_rows();
  *second = *row;
  second->mutable_contact()->set_last_name("pii1.k1.c2VhbGVk");
  expect_refused(request, "rows[1].contact.last_name");
  second->mutable_contact()->clear_last_name();
  (*second->mutable_attributes())["booth"] = "pii1.k1.c2VhbGVk";
  expect_refused(request, "rows[1].attributes[booth]");
  (*second->mutable_attributes())["booth"] = "B12";
  second->add_product_interests("pii1.k1.c2VhbGVk");  // not a personal field: refused too
  expect_refused(request, "rows[1].product_interests[1]");
  second->clear_product_interests();
  // What becomes sealed-looking once trimmed or lowercased is refused too.
  second->mutable_contact()->set_first_name(" \tpii1.k1.c2VhbGVk");
  expect_refused(request, "rows[1].contact.first_name");
  second->mutable_contact()->set_first_name("Ada");
  second->mutable_contact()->set_email("PII1.ann@example.com");
  expect_refused(request, "rows[1].contact.email");
  // Emails are also trimmed of Unicode blanks and unwrapped from one pair
  // of quotes or brackets (NormalizeEmail).
  for (const char* email : {"<pii1.ann@example.com>", "\xc2\xa0PII1.ann@example.com",
                            "\"\xe2\x80\x8b pii1.ann@example.com\"", "( pii1.ann@example.com)"}) {
    second->mutable_contact()->set_email(email);
    expect_refused(request, "rows[1].contact.email");
    ASSERT_TRUE(absl::StartsWith(*NormalizeEmail(email, "email"), "pii1.")) << email;
  }
  second->mutable_contact()->clear_email();
  EXPECT_TRUE(RefuseSealedInput(request).ok());
  request.set_import_id("pii1.k1.c2VhbGVk");
  expect_refused(request, "import_id");
}

TEST(FieldSealerTest, SealForCustomerIssuesAKeyOnlyWhenThereIsSomethingToSeal) {
  testing::TempDir dir;
  ServiceDb desk(dir.Sub("desk"), Master(), "crm/service-desk");
  crm::v1::LeadQualified no_text;
  no_text.set_lead_id("lead_1");
  google::protobuf::Message* nothing[] = {&no_text};
  ASSERT_TRUE(SealForCustomer(*desk.vault, "cus_1", Ctx(), nothing).ok());
  EXPECT_TRUE(desk.vault->KeyFor("cus_1", Ctx())->issue.has_value()) << "no key issued yet";

  crm::v1::LeadQualified noted;
  noted.set_note("called her husband");
  crm::v1::LeadActivityRecorded activity;
  activity.set_detail("met at the clinic");
  google::protobuf::Message* texts[] = {&noted, &activity};
  ASSERT_TRUE(SealForCustomer(*desk.vault, "cus_1", Ctx(), texts).ok());
  ASSERT_TRUE(IsSealed(noted.note()));
  ASSERT_TRUE(IsSealed(activity.detail()));
  EXPECT_FALSE(desk.vault->KeyFor("cus_1", Ctx())->issue.has_value()) << "issued and kept";
  EXPECT_EQ(noted.note().substr(0, 22), activity.detail().substr(0, 22)) << "one key";
  crm::v1::LeadQualified orphan;
  orphan.set_note("text without a customer");
  google::protobuf::Message* orphans[] = {&orphan};
  EXPECT_FALSE(SealForCustomer(*desk.vault, "", Ctx(), orphans).ok());
  OpenFields(noted, *desk.vault);
  EXPECT_EQ(noted.note(), "called her husband");
}

TEST(KeyVaultTest, KeysSurviveARestartAndReachOtherServicesThroughTheirRecords) {
  testing::TempDir dir;
  crm::v1::Contact contact = Ann();
  std::string key_id;
  {
    ServiceDb leads(dir.Sub("leads"), Master(), "crm/leads");
    auto key = leads.vault->EnsureKey("cus_1", Ctx());
    ASSERT_TRUE(key.ok());
    key_id = key->key_id;
    EXPECT_EQ(leads.vault->EnsureKey("cus_1", Ctx())->key_id, key_id) << "one key per customer";
    SealFields(contact, *key);
  }
  ServiceDb leads(dir.Sub("leads"), Master(), "crm/leads");
  crm::v1::Contact opened = contact;
  OpenFields(opened, *leads.vault);
  EXPECT_EQ(opened.email(), "ann@example.com");

  ServiceDb analytics(dir.Sub("analytics"), Master(), "crm/analytics");
  opened = contact;
  OpenFields(opened, *analytics.vault);
  EXPECT_EQ(opened.email(), "") << "no key yet";
  ASSERT_TRUE(analytics.Consume(*leads.store, kKeyStreamPrefix + key_id).ok());
  opened = contact;
  OpenFields(opened, *analytics.vault);
  EXPECT_EQ(opened.email(), "ann@example.com");

  ServiceDb foreign(dir.Sub("foreign"), RandomKey(), "crm/analytics");
  EXPECT_TRUE(absl::IsDataLoss(foreign.Consume(*leads.store, kKeyStreamPrefix + key_id)))
      << "a key wrapped under another master key";
}

// Erasures of one customer by two services are two streams: a subscriber
// that applied the first must not take the second for a redelivery.
TEST(KeyVaultTest, AnErasureByASecondServiceIsAppliedBySubscribersThatSawTheFirst) {
  testing::TempDir dir;
  ServiceDb leads(dir.Sub("leads"), Master(), "crm/leads");
  ServiceDb sales(dir.Sub("sales"), Master(), "crm/sales");
  ServiceDb analytics(dir.Sub("analytics"), Master(), "crm/analytics");
  WithKeyRecords records(*analytics.vault, nullptr);
  Subscriber subscriber(analytics.store->db(), records, SubscriberOptions{});
  int64_t offset = 0;
  auto feed = [&](const EventStore& from, const std::string& stream) {
    std::vector<ConsumedMessage> batch;
    const auto events = from.ReadStream(stream);
    for (const auto& e : events.value()) {
      batch.push_back({"crm.keys.v1", 0, offset++, e.SerializeAsString()});
    }
    EXPECT_FALSE(batch.empty()) << stream;
    return subscriber.ApplyBatch(batch);
  };
  ASSERT_TRUE(sales.vault->EraseCustomer("cus_1", "GDPR request 1", Ctx()).ok());
  ASSERT_TRUE(feed(*sales.store, EraseStream("crm/sales", "cus_1")).ok());

  // The person comes back through leads, which has read the first erasure,
  // and asks again to be forgotten.
  {
    ProjectionTxn txn(leads.store->db());
    const auto erasure = sales.store->ReadStream(EraseStream("crm/sales", "cus_1"));
    ASSERT_TRUE(erasure.ok()) << erasure.status();
    for (const auto& e : *erasure) ASSERT_TRUE(leads.vault->ApplyRecord(e, txn).ok());
    ASSERT_TRUE(txn.Commit().ok());
  }
  auto key = leads.vault->EnsureKey("cus_1", Ctx());
  ASSERT_TRUE(key.ok()) << key.status();
  ASSERT_TRUE(feed(*leads.store, kKeyStreamPrefix + key->key_id).ok());
  crm::v1::Contact ann = Ann();
  SealFields(ann, *key);
  crm::v1::Contact opened = ann;
  OpenFields(opened, *analytics.vault);
  ASSERT_EQ(opened.email(), "ann@example.com");

  ASSERT_TRUE(leads.vault->EraseCustomer("cus_1", "GDPR request 2", Ctx()).ok());
  ASSERT_NE(EraseStream("crm/leads", "cus_1"), EraseStream("crm/sales", "cus_1"));
  ASSERT_TRUE(feed(*leads.store, EraseStream("crm/leads", "cus_1")).ok());
  opened = ann;
  OpenFields(opened, *analytics.vault);
  EXPECT_EQ(opened.email(), "");
}

TEST(KeyVaultTest, ErasureDestroysEveryKeyOfTheCustomerInEveryService) {
  testing::TempDir dir;
  ServiceDb leads(dir.Sub("leads"), Master(), "crm/leads");
  ServiceDb sales(dir.Sub("sales"), Master(), "crm/sales");
  ServiceDb analytics(dir.Sub("analytics"), Master(), "crm/analytics");
  auto lead_key = leads.vault->EnsureKey("cus_1", Ctx());
  auto other = leads.vault->EnsureKey("cus_2", Ctx());
  const std::string lead_stream = kKeyStreamPrefix + lead_key->key_id;
  ASSERT_TRUE(sales.Consume(*leads.store, lead_stream).ok());
  ASSERT_TRUE(analytics.Consume(*leads.store, lead_stream).ok());
  ASSERT_TRUE(analytics.Consume(*leads.store, kKeyStreamPrefix + other->key_id).ok());
  crm::v1::Contact ann = Ann();
  SealFields(ann, *lead_key);
  crm::v1::Contact bob = Ann();
  bob.set_email("bob@example.com");
  SealFields(bob, *other);

  const crm::v1::EventEnvelope issue_record = leads.store->ReadStream(lead_stream)->front();
  // Erased through sales: it held leads' key, not its own.
  auto destroyed = sales.vault->EraseCustomer("cus_1", "GDPR request 7", Ctx());
  ASSERT_TRUE(destroyed.ok()) << destroyed.status();
  EXPECT_EQ(destroyed->keys_destroyed, 1);
  const std::string erase_stream = EraseStream("crm/sales", "cus_1");
  ASSERT_TRUE(leads.Consume(*sales.store, erase_stream).ok());
  ASSERT_TRUE(analytics.Consume(*sales.store, erase_stream).ok());

  for (ServiceDb* s : {&leads, &sales, &analytics}) {
    crm::v1::Contact opened = ann;
    OpenFields(opened, *s->vault);
    EXPECT_EQ(opened.email(), "");
    EXPECT_EQ(opened.first_name(), "");
    EXPECT_EQ(opened.title(), "CTO") << "what is not personal stays";
  }
  crm::v1::Contact opened = bob;
  OpenFields(opened, *analytics.vault);
  EXPECT_EQ(opened.email(), "bob@example.com") << "other customers keep their data";

  // The issuer published the key's destruction and dropped the wrapped key
  // from its own log.
  auto records = leads.store->ReadStream(lead_stream);
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 2u);
  crm::v1::DataKeyIssued issued;
  ASSERT_TRUE((*records)[0].payload().UnpackTo(&issued));
  EXPECT_TRUE(issued.wrapped_key().empty());
  EXPECT_TRUE((*records)[1].payload().Is<crm::v1::DataKeyDestroyed>());

  // A consumer that reads the erasure before the key (another partition,
  // a rebuild of a topic not compacted yet) still refuses the key.
  ServiceDb rebuilt(dir.Sub("rebuilt"), Master(), "crm/analytics");
  ASSERT_TRUE(rebuilt.Consume(*sales.store, erase_stream).ok());
  ProjectionTxn txn(rebuilt.store->db());
  ASSERT_TRUE(rebuilt.vault->ApplyRecord(issue_record, txn).ok());
  ASSERT_TRUE(txn.Commit().ok());
  opened = ann;
  OpenFields(opened, *rebuilt.vault);
  EXPECT_EQ(opened.email(), "");

  // Erasure is repeatable; new data after it gets a new key.
  EXPECT_TRUE(leads.vault->EraseCustomer("cus_1", "again", Ctx()).ok());
  auto fresh = leads.vault->EnsureKey("cus_1", Ctx());
  ASSERT_TRUE(fresh.ok());
  EXPECT_NE(fresh->key_id, lead_key->key_id);
}

// Merged leads keep the merged person's data sealed under that customer's
// key: erasing the survivor must reach it, through any chain of merges.
TEST(KeyVaultTest, ErasingTheSurvivorOfMergesErasesEveryCustomerMergedIntoIt) {
  testing::TempDir dir;
  std::map<std::string, crm::v1::Contact> sealed;  // by customer
  std::vector<std::string> streams;                // key and merge records
  {
    ServiceDb leads(dir.Sub("leads"), Master(), "crm/leads");
    for (const std::string customer : {"cus_1", "cus_2", "cus_3", "cus_4"}) {
      auto key = leads.vault->EnsureKey(customer, Ctx());
      ASSERT_TRUE(key.ok()) << key.status();
      crm::v1::Contact c = Ann();
      SealFields(c, *key);
      sealed[customer] = c;
      streams.push_back(kKeyStreamPrefix + key->key_id);
    }
    EXPECT_FALSE(leads.vault->MergeRecord("lead_9", "cus_1", "cus_1", Ctx()).has_value())
        << "leads of one customer link nothing";
    // cus_3 merged into cus_2, then cus_2 into cus_1.
    for (const auto& [lead, merged, survivor] :
         {std::tuple{"lead_3", "cus_3", "cus_2"}, std::tuple{"lead_2", "cus_2", "cus_1"}}) {
      auto record = leads.vault->MergeRecord(lead, merged, survivor, Ctx());
      ASSERT_TRUE(record.has_value());
      streams.push_back(record->stream);
      ASSERT_TRUE(leads.store->Append(*std::move(record)).ok());
      leads.vault->Merged(merged, survivor);
    }
  }
  // Sales learns keys and links from the records; leads reloads its own.
  ServiceDb leads(dir.Sub("leads"), Master(), "crm/leads");
  ServiceDb sales(dir.Sub("sales"), Master(), "crm/sales");
  for (const auto& stream : streams) ASSERT_TRUE(sales.Consume(*leads.store, stream).ok());
  auto open = [&](const ServiceDb& s, const std::string& customer) {
    crm::v1::Contact c = sealed[customer];
    OpenFields(c, *s.vault);
    return c.email();
  };
  ASSERT_EQ(open(sales, "cus_3"), "ann@example.com");

  auto erasure = sales.vault->EraseCustomer("cus_1", "GDPR request 11", Ctx());
  ASSERT_TRUE(erasure.ok()) << erasure.status();
  EXPECT_EQ(erasure->merged_customer_ids, (std::vector<std::string>{"cus_2", "cus_3"}));
  EXPECT_EQ(erasure->keys_destroyed, 3);
  for (const std::string customer : {"cus_1", "cus_2", "cus_3"}) {
    auto records = sales.store->ReadStream(EraseStream("crm/sales", customer));
    ASSERT_TRUE(records.ok() && records->size() == 1) << customer;
    crm::v1::CustomerErased erased;
    ASSERT_TRUE(records->front().payload().UnpackTo(&erased));
    EXPECT_EQ(erased.customer_id(), customer);
    EXPECT_EQ(erased.erased_with_customer_id(), customer == "cus_1" ? "" : "cus_1");
    ASSERT_TRUE(leads.Consume(*sales.store, EraseStream("crm/sales", customer)).ok());
  }
  for (const ServiceDb* s : {&leads, &sales}) {
    for (const std::string customer : {"cus_1", "cus_2", "cus_3"}) {
      EXPECT_EQ(open(*s, customer), "") << customer;
    }
    EXPECT_EQ(open(*s, "cus_4"), "ann@example.com") << "not merged, not erased";
  }

  // Erasing one in the middle of the chain takes what was merged into it,
  // not what it was merged into; leads knows the links from its rows.
  auto middle = leads.vault->EraseCustomer("cus_2", "GDPR request 12", Ctx());
  ASSERT_TRUE(middle.ok()) << middle.status();
  EXPECT_EQ(middle->merged_customer_ids, (std::vector<std::string>{"cus_3"}));
  auto alone = leads.vault->EraseCustomer("cus_4", "GDPR request 13", Ctx());
  ASSERT_TRUE(alone.ok());
  EXPECT_TRUE(alone->merged_customer_ids.empty());
  EXPECT_EQ(alone->keys_destroyed, 1);

  // Customers merged both ways (leads of each went into the other's).
  leads.vault->Merged("cus_5", "cus_6");
  leads.vault->Merged("cus_6", "cus_5");
  auto both = leads.vault->EraseCustomer("cus_5", "GDPR request 14", Ctx());
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_EQ(both->merged_customer_ids, (std::vector<std::string>{"cus_6"}));
}

// The eraser may not have read a merge link yet, and a subscriber may read
// the link after the erasure: every service that knows the link erases the
// merged customer with the survivor.
TEST(KeyVaultTest, AnErasureReachesCustomersMergedIntoItThatTheEraserHadNotSeen) {
  testing::TempDir dir;
  ServiceDb leads(dir.Sub("leads"), Master(), "crm/leads");
  ServiceDb sales(dir.Sub("sales"), Master(), "crm/sales");
  ServiceDb desk(dir.Sub("desk"), Master(), "crm/service-desk");
  std::map<std::string, crm::v1::Contact> sealed;  // by customer
  std::map<std::string, std::string> key_streams;  // by customer
  for (const std::string customer : {"cus_1", "cus_2", "cus_3", "cus_4"}) {
    auto key = leads.vault->EnsureKey(customer, Ctx());
    ASSERT_TRUE(key.ok()) << key.status();
    crm::v1::Contact c = Ann();
    SealFields(c, *key);
    sealed[customer] = c;
    key_streams[customer] = kKeyStreamPrefix + key->key_id;
    ASSERT_TRUE(sales.Consume(*leads.store, key_streams[customer]).ok());
    ASSERT_TRUE(desk.Consume(*leads.store, key_streams[customer]).ok());
  }
  auto open = [&](const ServiceDb& s, const std::string& customer) {
    crm::v1::Contact c = sealed[customer];
    OpenFields(c, *s.vault);
    return c.email();
  };
  auto merge = [&](const std::string& lead, const std::string& merged,
                   const std::string& survivor) {
    auto record = leads.vault->MergeRecord(lead, merged, survivor, Ctx());
    EXPECT_TRUE(record.has_value());
    const std::string stream = record->stream;
    EXPECT_TRUE(leads.store->Append(*std::move(record)).ok());
    leads.vault->Merged(merged, survivor);
    return stream;
  };
  const std::string link = merge("lead_2", "cus_2", "cus_1");

  // Sales erases cus_1 before it has read the link.
  auto erasure = sales.vault->EraseCustomer("cus_1", "GDPR request 21", Ctx());
  ASSERT_TRUE(erasure.ok()) << erasure.status();
  EXPECT_TRUE(erasure->merged_customer_ids.empty());
  const std::string erased = EraseStream("crm/sales", "cus_1");
  // Leads knows the link: it erases cus_2 and destroys the key it issued.
  ASSERT_TRUE(leads.Consume(*sales.store, erased).ok());
  EXPECT_EQ(open(leads, "cus_2"), "");
  auto records = leads.store->ReadStream(key_streams["cus_2"]);
  ASSERT_TRUE(records.ok());
  EXPECT_TRUE(records->back().payload().Is<crm::v1::DataKeyDestroyed>());
  ASSERT_TRUE(sales.Consume(*leads.store, key_streams["cus_2"]).ok());
  EXPECT_EQ(open(sales, "cus_2"), "");
  // The desk reads the erasure, then the link.
  ASSERT_TRUE(desk.Consume(*sales.store, erased).ok());
  EXPECT_EQ(open(desk, "cus_2"), "ann@example.com") << "no link known yet";
  ASSERT_TRUE(desk.Consume(*leads.store, link).ok());
  EXPECT_EQ(open(desk, "cus_2"), "");
  EXPECT_TRUE(desk.vault->Erased("cus_2"));

  // A merge that raced an erasure (leads had not read it yet): the services
  // that read the link first and those that read it last agree.
  ASSERT_TRUE(sales.vault->EraseCustomer("cus_3", "GDPR request 22", Ctx()).ok());
  const std::string raced = merge("lead_4", "cus_4", "cus_3");
  ASSERT_TRUE(desk.Consume(*sales.store, EraseStream("crm/sales", "cus_3")).ok());
  ASSERT_TRUE(desk.Consume(*leads.store, raced).ok());
  ASSERT_TRUE(leads.Consume(*sales.store, EraseStream("crm/sales", "cus_3")).ok());
  for (const ServiceDb* s : {&leads, &desk}) {
    EXPECT_TRUE(s->vault->Erased("cus_4"));
    EXPECT_EQ(open(*s, "cus_4"), "");
  }
}

TEST(BlindIndexTest, EqualInputsMatchAndTheMasterKeyDecides) {
  testing::TempDir dir;
  ServiceDb a(dir.Sub("a"), Master(), "crm/leads");
  ServiceDb b(dir.Sub("b"), RandomKey(), "crm/leads");
  const std::string ann = BlindIndex(*a.vault, "email", "ann@example.com");
  EXPECT_EQ(ann, BlindIndex(*a.vault, "email", "ann@example.com"));
  EXPECT_NE(ann, BlindIndex(*a.vault, "phone", "ann@example.com"));
  EXPECT_NE(ann, BlindIndex(*b.vault, "email", "ann@example.com"));
  EXPECT_FALSE(absl::StrContains(ann, "ann"));
}

}  // namespace
}  // namespace crm::pii
