// Master key rotation: keys stored under a previous master key are read,
// re-wrapped under the current one, republished by their issuer, and keep
// working for sealing, dedupe and erasure.
#include "libs/common/pii/key_vault.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "crm/v1/leads.pb.h"
#include "crm/v1/pii.pb.h"
#include "libs/common/envelope.h"
#include "libs/common/ids.h"
#include "libs/common/pii/cipher.h"
#include "libs/common/pii/field_sealer.h"
#include "libs/common/testing/files.h"
#include "libs/common/testing/temp_dir.h"
#include "rocksdb/write_batch.h"

namespace crm::pii {
namespace {

EventContext Ctx() {
  EventContext ctx;
  ctx.actor = "admin-1";
  ctx.occurred_at = absl::Now();
  return ctx;
}

// A service's store and vault, opened with `masters`; `issues` false for a
// service that only reads keys (no event log handed to the vault).
struct Service {
  static absl::StatusOr<std::unique_ptr<Service>> Open(const std::string& path,
                                                       const MasterKeys& masters,
                                                       const std::string& issuer,
                                                       bool issues = true,
                                                       size_t cached_keys = KeyVault::kCachedKeys) {
    auto s = std::make_unique<Service>();
    std::vector<std::string> families = Subscriber::Families();
    families.push_back(KeyVault::kFamily);
    auto store = EventStore::Open(path, families);
    if (!store.ok()) return store.status();
    s->store = *std::move(store);
    auto vault = KeyVault::Open(s->store->db(), issues ? s->store.get() : nullptr, masters, issuer,
                                cached_keys);
    if (!vault.ok()) return vault.status();
    s->vault = *std::move(vault);
    return s;
  }
  // Applies `records` the way the subscriber would from crm.keys.v1, and
  // asks for a purge once they committed, as WithKeyRecords::Committed does.
  absl::Status Apply(const std::vector<crm::v1::EventEnvelope>& records) {
    ProjectionTxn txn(store->db());
    for (const auto& e : records) {
      if (auto st = vault->ApplyRecord(e, txn); !st.ok()) return st;
    }
    if (auto st = txn.Commit(); !st.ok()) return st;
    vault->RequestPurge();
    return absl::OkStatus();
  }
  std::vector<crm::v1::EventEnvelope> Stream(const std::string& key_id) const {
    return *store->ReadStream(kKeyStreamPrefix + key_id);
  }
  std::string OpenEmail(const crm::v1::Contact& sealed) const {
    crm::v1::Contact c = sealed;
    OpenFields(c, *vault);
    return c.email();
  }

  std::unique_ptr<EventStore> store;
  std::unique_ptr<KeyVault> vault;
};

crm::v1::Contact Sealed(const std::string& email, const DataKey& key) {
  crm::v1::Contact c;
  c.set_first_name("Ann");
  c.set_email(email);
  SealFields(c, key);
  return c;
}

crm::v1::DataKeyIssued Issued(const crm::v1::EventEnvelope& e) {
  crm::v1::DataKeyIssued issued;
  EXPECT_TRUE(e.payload().Is<crm::v1::DataKeyIssued>()) << e.type();
  e.payload().UnpackTo(&issued);
  return issued;
}

// Memory holds a few keys; the database holds them all.
class KeyVaultMemoryTest : public ::testing::Test {
 protected:
  static constexpr size_t kCached = 4;
  const Key master_ = RandomKey();
  testing::TempDir dir_;
};

TEST_F(KeyVaultMemoryTest, KeysBeyondWhatMemoryHoldsKeepSealingAndOpening) {
  const std::string path = dir_.Sub("leads");
  std::vector<DataKey> keys;
  std::vector<crm::v1::Contact> sealed;
  {
    auto leads = *Service::Open(path, master_, "crm/leads", true, kCached);
    for (int i = 0; i < 50; ++i) {
      keys.push_back(*leads->vault->EnsureKey(absl::StrCat("cus_", i), Ctx()));
      sealed.push_back(Sealed(absl::StrCat("person", i, "@example.com"), keys.back()));
    }
    for (int i = 0; i < 50; ++i) {
      EXPECT_EQ(leads->OpenEmail(sealed[i]), absl::StrCat("person", i, "@example.com"));
      auto again = leads->vault->KeyFor(absl::StrCat("cus_", i), Ctx());
      ASSERT_TRUE(again.ok()) << again.status();
      EXPECT_FALSE(again->issue.has_value()) << "customer " << i << " has a key";
      EXPECT_EQ(again->key.key_id, keys[i].key_id);
    }
  }
  // After a restart too, and for a service that only learned the keys.
  auto leads = *Service::Open(path, master_, "crm/leads", true, kCached);
  auto reader = *Service::Open(dir_.Sub("analytics"), master_, "crm/analytics", false, kCached);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(reader->Apply(leads->Stream(keys[i].key_id)).ok());
  for (int i = 49; i >= 0; --i) {
    EXPECT_EQ(leads->vault->EnsureKey(absl::StrCat("cus_", i), Ctx())->key_id, keys[i].key_id);
    EXPECT_EQ(leads->OpenEmail(sealed[i]), absl::StrCat("person", i, "@example.com"));
    EXPECT_EQ(reader->OpenEmail(sealed[i]), absl::StrCat("person", i, "@example.com"));
  }
}

TEST_F(KeyVaultMemoryTest, ErasureDestroysKeysThatAreNotInMemory) {
  const std::string path = dir_.Sub("leads");
  auto leads = *Service::Open(path, master_, "crm/leads", true, kCached);
  auto reader = *Service::Open(dir_.Sub("analytics"), master_, "crm/analytics", false, kCached);
  const DataKey ann = *leads->vault->EnsureKey("cus_ann", Ctx());
  ASSERT_TRUE(reader->Apply(leads->Stream(ann.key_id)).ok());
  for (int i = 0; i < 20; ++i) {
    const DataKey other = *leads->vault->EnsureKey(absl::StrCat("cus_", i), Ctx());
    ASSERT_TRUE(reader->Apply(leads->Stream(other.key_id)).ok());
  }
  const crm::v1::Contact sealed = Sealed("ann@example.com", ann);

  auto erased = leads->vault->EraseCustomer("cus_ann", "GDPR request 11", Ctx());
  ASSERT_TRUE(erased.ok()) << erased.status();
  EXPECT_EQ(erased->keys_destroyed, 1);
  EXPECT_EQ(leads->OpenEmail(sealed), "");
  EXPECT_EQ(leads->Stream(ann.key_id).size(), 2u) << "issued, then destroyed";
  // The reader hears the erasure and the destruction from the topic.
  ASSERT_TRUE(reader->Apply(*leads->store->ReadStream(EraseStream("crm/leads", "cus_ann"))).ok());
  ASSERT_TRUE(reader->Apply(leads->Stream(ann.key_id)).ok());
  EXPECT_EQ(reader->OpenEmail(sealed), "");
  for (Service* s : {leads.get(), reader.get()}) {
    auto row = s->store->db().Get(KeyVault::kFamily, "k" + ann.key_id);
    ASSERT_TRUE(row.ok());
    EXPECT_FALSE(row->has_value());
  }
  // Gone after a restart too, and the customer's next data gets a new key.
  leads.reset();
  leads = *Service::Open(path, master_, "crm/leads", true, kCached);
  EXPECT_EQ(leads->OpenEmail(sealed), "");
  auto next = leads->vault->KeyFor("cus_ann", Ctx());
  ASSERT_TRUE(next.ok());
  EXPECT_TRUE(next->issue.has_value());
}

// Whether, within 20 s, no file under `dir` holds `bytes` (the vault's purge
// thread runs a second after it is asked).
bool PurgedFrom(const std::string& dir, const std::string& bytes) {
  for (const absl::Time give_up = absl::Now() + absl::Seconds(20); absl::Now() < give_up;
       absl::SleepFor(absl::Milliseconds(100))) {
    if (testing::FilesHolding(dir, bytes).empty()) return true;
  }
  return false;
}

// A RocksDB delete leaves the old value in the files until a compaction
// meets both: with the master key (in every pod) anyone holding the data
// dir, or a backup taken after the erasure, could open the key again.
TEST_F(KeyVaultMemoryTest, AnErasedKeyLeavesNoCopyInTheDataFiles) {
  const std::string leads_dir = dir_.Sub("leads");
  const std::string reader_dir = dir_.Sub("analytics");
  auto leads = *Service::Open(leads_dir, master_, "crm/leads", true, kCached);
  auto reader = *Service::Open(reader_dir, master_, "crm/analytics", false, kCached);
  const DataKey ann = *leads->vault->EnsureKey("cus_ann", Ctx());
  const DataKey bob = *leads->vault->EnsureKey("cus_bob", Ctx());
  const std::string wrapped = Issued(leads->Stream(ann.key_id)[0]).wrapped_key();
  ASSERT_TRUE(reader->Apply(leads->Stream(ann.key_id)).ok());
  ASSERT_TRUE(reader->Apply(leads->Stream(bob.key_id)).ok());
  // The issuer's copies in table files, the reader's in its WAL.
  ASSERT_TRUE(leads->store->db().Flush().ok());
  ASSERT_FALSE(testing::FilesHolding(leads_dir, wrapped).empty());
  ASSERT_FALSE(testing::FilesHolding(reader_dir, wrapped).empty());

  // Purged by the vault's thread a second or so after the destruction.
  auto purged = [&wrapped](const std::string& dir) { return PurgedFrom(dir, wrapped); };
  ASSERT_TRUE(leads->vault->EraseCustomer("cus_ann", "GDPR request 12", Ctx()).ok());
  EXPECT_TRUE(purged(leads_dir)) << absl::StrJoin(testing::FilesHolding(leads_dir, wrapped), " ");
  ASSERT_TRUE(reader->Apply(*leads->store->ReadStream(EraseStream("crm/leads", "cus_ann"))).ok());
  ASSERT_TRUE(reader->Apply(leads->Stream(ann.key_id)).ok());
  EXPECT_TRUE(purged(reader_dir)) << absl::StrJoin(testing::FilesHolding(reader_dir, wrapped), " ");

  // Nothing is left pending; the other customer's key is untouched, before
  // and after a restart.
  for (Service* svc : {leads.get(), reader.get()}) {
    auto it = svc->store->db().NewIterator(KeyVault::kFamily);
    it->Seek("p");
    EXPECT_FALSE(it->Valid() && it->key().starts_with("p")) << "a purge row is left";
  }
  const crm::v1::Contact sealed = Sealed("bob@example.com", bob);
  EXPECT_EQ(reader->OpenEmail(sealed), "bob@example.com");
  leads.reset();
  leads = *Service::Open(leads_dir, master_, "crm/leads", true, kCached);
  EXPECT_EQ(leads->OpenEmail(sealed), "bob@example.com");
}

// A destruction stored but not purged yet (a crash, a failed compaction):
// its purge row survives, and the next open purges it.
TEST_F(KeyVaultMemoryTest, APurgeLeftPendingIsDoneAtTheNextOpen) {
  const std::string reader_dir = dir_.Sub("analytics");
  auto leads = *Service::Open(dir_.Sub("leads"), master_, "crm/leads", true, kCached);
  const DataKey ann = *leads->vault->EnsureKey("cus_ann", Ctx());
  const std::string wrapped = Issued(leads->Stream(ann.key_id)[0]).wrapped_key();
  {
    auto reader = *Service::Open(reader_dir, master_, "crm/analytics", false, kCached);
    ASSERT_TRUE(reader->Apply(leads->Stream(ann.key_id)).ok());
    ASSERT_TRUE(reader->store->db().Flush().ok());
    Database& db = reader->store->db();
    rocksdb::WriteBatch destroyed;
    destroyed.Delete(db.Family(KeyVault::kFamily), "k" + ann.key_id);
    destroyed.Put(db.Family(KeyVault::kFamily), "p" + ann.key_id, "");
    ASSERT_TRUE(db.Write(&destroyed, true).ok());
    ASSERT_TRUE(db.Flush().ok());
    ASSERT_FALSE(testing::FilesHolding(reader_dir, wrapped).empty());
  }
  auto reader = *Service::Open(reader_dir, master_, "crm/analytics", false, kCached);
  EXPECT_TRUE(PurgedFrom(reader_dir, wrapped));
}

// The person comes back after an erasure and gets a new key; the erasure
// read back from the topic afterwards (by the eraser itself, or by another
// service that heard of the new key first) ends only the keys issued by
// then, and so does a restart.
TEST_F(KeyVaultMemoryTest, AnErasureReadLateKeepsTheKeyIssuedAfterIt) {
  const std::string path = dir_.Sub("leads");
  auto leads = *Service::Open(path, master_, "crm/leads", true, kCached);
  auto sales = *Service::Open(dir_.Sub("sales"), master_, "crm/sales", true, kCached);
  const DataKey old_key = *leads->vault->EnsureKey("cus_ann", Ctx());
  ASSERT_TRUE(leads->vault->EraseCustomer("cus_ann", "GDPR request 13", Ctx()).ok());
  absl::SleepFor(absl::Milliseconds(2));  // keys are stamped with the clock
  const DataKey new_key = *leads->vault->EnsureKey("cus_ann", Ctx());
  ASSERT_NE(new_key.key_id, old_key.key_id);
  const crm::v1::Contact sealed = Sealed("ann@example.com", new_key);

  const auto erasure = *leads->store->ReadStream(EraseStream("crm/leads", "cus_ann"));
  ASSERT_TRUE(leads->Apply(erasure).ok());
  ASSERT_TRUE(sales->Apply(leads->Stream(new_key.key_id)).ok());
  ASSERT_TRUE(sales->Apply(erasure).ok());
  for (Service* s : {leads.get(), sales.get()}) {
    EXPECT_EQ(s->OpenEmail(sealed), "ann@example.com") << "the new key was destroyed";
  }
  ASSERT_EQ(leads->Stream(new_key.key_id).size(), 1u) << "a DataKeyDestroyed for the new key";
  // Read from the database too, not only from memory (the eraser's erasure
  // time in memory has nanoseconds its records do not).
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(leads->vault->EnsureKey(absl::StrCat("cus_", i), Ctx()).ok());
  EXPECT_EQ(leads->OpenEmail(sealed), "ann@example.com") << "the new key refused once evicted";
  leads.reset();
  leads = *Service::Open(path, master_, "crm/leads", true, kCached);
  EXPECT_EQ(leads->OpenEmail(sealed), "ann@example.com") << "the new key deleted at start";
}

// The eraser's clock a minute behind the issuer's: a key issued just
// before the erasure, by a service that had not heard of it, is stamped
// after the erasure's time and is still ended by it.
TEST_F(KeyVaultMemoryTest, AnErasureEndsAKeyItsIssuerDidNotKnowOfDespiteClockSkew) {
  auto sales = *Service::Open(dir_.Sub("sales"), master_, "crm/sales", true, kCached);
  const DataKey key = *sales->vault->EnsureKey("cus_ann", Ctx());
  const crm::v1::Contact sealed = Sealed("ann@example.com", key);
  crm::v1::CustomerErased erased;
  erased.set_customer_id("cus_ann");
  erased.set_reason("GDPR request 14");
  EventContext slow = Ctx();
  slow.source = "crm/leads";
  slow.occurred_at = key.issued_at - absl::Minutes(1);
  auto record = MakeEnvelope(erased, "cus_ann", slow);
  record.set_stream(EraseStream("crm/leads", "cus_ann"));
  record.set_stream_version(1);
  ASSERT_TRUE(sales->Apply({record}).ok());
  EXPECT_EQ(sales->OpenEmail(sealed), "");
  const auto stream = sales->Stream(key.key_id);
  ASSERT_EQ(stream.size(), 2u) << "issued, then destroyed";
  EXPECT_TRUE(stream.back().payload().Is<crm::v1::DataKeyDestroyed>());
  // A key issued after it, knowing of it, is the person's new key.
  const DataKey next = *sales->vault->EnsureKey("cus_ann", Ctx());
  EXPECT_NE(next.key_id, key.key_id);
  EXPECT_TRUE(Issued(sales->Stream(next.key_id).front()).has_issued_after_erasure_at());
  ASSERT_TRUE(sales->Apply({record}).ok());  // redelivered
  EXPECT_EQ(sales->OpenEmail(Sealed("ann@example.com", next)), "ann@example.com");
}

// A command appends a new key's issue, then makes it usable (Issued); an
// erasure of the customer in between must keep it refused.
// A batch of crm.keys.v1 whose commit failed comes again: the key it put
// in memory must not pass for stored, or its rows are never written and an
// erasure here finds no key to destroy.
TEST_F(KeyVaultMemoryTest, AKeyRecordRedeliveredAfterAFailedCommitIsStored) {
  auto leads = *Service::Open(dir_.Sub("leads"), master_, "crm/leads", true, kCached);
  auto sales = *Service::Open(dir_.Sub("sales"), master_, "crm/sales", true, kCached);
  const DataKey ann = *leads->vault->EnsureKey("cus_ann", Ctx());
  {
    ProjectionTxn failed(sales->store->db());  // dropped: never committed
    for (const auto& e : leads->Stream(ann.key_id)) {
      ASSERT_TRUE(sales->vault->ApplyRecord(e, failed).ok());
    }
  }
  ASSERT_TRUE(sales->Apply(leads->Stream(ann.key_id)).ok());
  auto erased = sales->vault->EraseCustomer("cus_ann", "GDPR request 12", Ctx());
  ASSERT_TRUE(erased.ok()) << erased.status();
  EXPECT_EQ(erased->keys_destroyed, 1);
  auto row = sales->store->db().Get(KeyVault::kFamily, "k" + ann.key_id);
  ASSERT_TRUE(row.ok());
  EXPECT_FALSE(row->has_value()) << "the learned key's row outlived the erasure";
}

TEST_F(KeyVaultMemoryTest, AKeyErasedBetweenItsIssueAndIssuedStaysRefused) {
  auto leads = *Service::Open(dir_.Sub("leads"), master_, "crm/leads", true, kCached);
  auto sealing = leads->vault->KeyFor("cus_ann", Ctx());
  ASSERT_TRUE(sealing.ok() && sealing->issue.has_value());
  ASSERT_TRUE(leads->store->Append(*sealing->issue).ok());
  const crm::v1::Contact sealed = Sealed("ann@example.com", sealing->key);
  auto erased = leads->vault->EraseCustomer("cus_ann", "GDPR request 21", Ctx());
  ASSERT_TRUE(erased.ok()) << erased.status();
  EXPECT_EQ(erased->keys_destroyed, 1);
  leads->vault->Issued("cus_ann", sealing->key);  // the command goes on
  EXPECT_FALSE(leads->vault->Find(sealing->key.key_id).has_value());
  EXPECT_EQ(leads->OpenEmail(sealed), "");
  auto next = leads->vault->KeyFor("cus_ann", Ctx());
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_NE(next->key.key_id, sealing->key.key_id) << "new data gets a new key";
}

// An erasure cut short by a failed write is ended by a retry: the key is
// destroyed and no issue record keeps its wrapped form, whichever write
// failed.
TEST_F(KeyVaultMemoryTest, AnErasureCutShortIsEndedByARetry) {
  for (uint64_t failing = 1; failing <= 3; ++failing) {
    auto leads = *Service::Open(dir_.Sub(absl::StrCat("leads", failing)), master_, "crm/leads",
                                true, kCached);
    const DataKey ann = *leads->vault->EnsureKey("cus_ann", Ctx());
    leads->store->db().FailWritesForTest(/*every=*/failing, /*times=*/1);
    auto first = leads->vault->EraseCustomer("cus_ann", "GDPR request 31", Ctx());
    leads->store->db().FailWritesForTest(0, 0);
    if (!first.ok()) {
      auto retry = leads->vault->EraseCustomer("cus_ann", "GDPR request 31", Ctx());
      ASSERT_TRUE(retry.ok()) << "write " << failing << ": " << retry.status();
    }
    const auto stream = leads->Stream(ann.key_id);
    ASSERT_EQ(stream.size(), 2u) << "write " << failing << ": issued, then destroyed";
    EXPECT_TRUE(stream.back().payload().Is<crm::v1::DataKeyDestroyed>()) << failing;
    crm::v1::DataKeyIssued issued;
    ASSERT_TRUE(stream.front().payload().UnpackTo(&issued));
    EXPECT_TRUE(issued.wrapped_key().empty()) << "write " << failing;
    EXPECT_FALSE(leads->vault->Find(ann.key_id).has_value()) << failing;
  }
}

// The same for an erasure another service started: this service destroys
// its own key of the customer when it hears of it, and a write cut short
// there is ended when the record comes again.
TEST_F(KeyVaultMemoryTest, AnErasureHeardFromAnotherServiceCutShortIsEndedByARedelivery) {
  for (uint64_t failing = 1; failing <= 3; ++failing) {
    auto leads = *Service::Open(dir_.Sub(absl::StrCat("leads", failing)), master_, "crm/leads",
                                true, kCached);
    auto sales = *Service::Open(dir_.Sub(absl::StrCat("sales", failing)), master_, "crm/sales",
                                true, kCached);
    const DataKey own = *sales->vault->EnsureKey("cus_ann", Ctx());
    const std::string wrapped = Issued(sales->Stream(own.key_id).front()).wrapped_key();
    ASSERT_TRUE(sales->store->db().Flush().ok());
    ASSERT_TRUE(leads->vault->EnsureKey("cus_ann", Ctx()).ok());
    ASSERT_TRUE(leads->vault->EraseCustomer("cus_ann", "GDPR request 32", Ctx()).ok());
    const auto erasure = *leads->store->ReadStream(EraseStream("crm/leads", "cus_ann"));
    sales->store->db().FailWritesForTest(/*every=*/failing, /*times=*/1);
    const absl::Status first = sales->Apply(erasure);
    sales->store->db().FailWritesForTest(0, 0);
    if (!first.ok()) {
      const absl::Status again = sales->Apply(erasure);  // redelivered
      ASSERT_TRUE(again.ok()) << "write " << failing << ": " << again;
    }
    const auto stream = sales->Stream(own.key_id);
    ASSERT_EQ(stream.size(), 2u) << "write " << failing << ": issued, then destroyed";
    EXPECT_TRUE(stream.back().payload().Is<crm::v1::DataKeyDestroyed>()) << failing;
    EXPECT_TRUE(Issued(stream.front()).wrapped_key().empty()) << "write " << failing;
    EXPECT_FALSE(sales->vault->Find(own.key_id).has_value()) << failing;
    // Its destruction, written before the batch failed, asks for the purge
    // itself: the retry no longer finds the key.
    EXPECT_TRUE(PurgedFrom(dir_.Sub(absl::StrCat("sales", failing)), wrapped)) << failing;
  }
}

// A service restored from a backup taken before it issued a key reads the
// key back from crm.keys.v1 as its own, with no stream for it in its log.
// Erasing the customer there, or hearing of the erasure, still publishes the
// key's destruction: only a later record under the key's stream makes the
// topic's compaction drop the wrapped key.
TEST_F(KeyVaultMemoryTest, AnOwnKeyReadBackFromTheTopicIsDestroyedOnItToo) {
  auto leads = *Service::Open(dir_.Sub("leads"), master_, "crm/leads", true, kCached);
  auto sales = *Service::Open(dir_.Sub("sales"), master_, "crm/sales", true, kCached);
  const DataKey by_leads = *leads->vault->EnsureKey("cus_ann", Ctx());
  const DataKey by_sales = *sales->vault->EnsureKey("cus_ann", Ctx());
  auto restored_leads =
      *Service::Open(dir_.Sub("leads-restored"), master_, "crm/leads", true, kCached);
  auto restored_sales =
      *Service::Open(dir_.Sub("sales-restored"), master_, "crm/sales", true, kCached);
  for (Service* s : {restored_leads.get(), restored_sales.get()}) {
    ASSERT_TRUE(s->Apply(leads->Stream(by_leads.key_id)).ok());
    ASSERT_TRUE(s->Apply(sales->Stream(by_sales.key_id)).ok());
  }
  ASSERT_TRUE(restored_leads->Stream(by_leads.key_id).empty());

  auto erased = restored_leads->vault->EraseCustomer("cus_ann", "GDPR request 40", Ctx());
  ASSERT_TRUE(erased.ok()) << erased.status();
  EXPECT_EQ(erased->keys_destroyed, 2);
  ASSERT_TRUE(
      restored_sales->Apply(*restored_leads->store->ReadStream(EraseStream("crm/leads", "cus_ann")))
          .ok());
  for (const auto& [service, key_id] : {std::pair{restored_leads.get(), by_leads.key_id},
                                        {restored_sales.get(), by_sales.key_id}}) {
    const auto stream = service->Stream(key_id);
    ASSERT_EQ(stream.size(), 1u) << key_id;
    ASSERT_TRUE(stream.front().payload().Is<crm::v1::DataKeyDestroyed>()) << stream.front().type();
    crm::v1::DataKeyDestroyed destroyed;
    ASSERT_TRUE(stream.front().payload().UnpackTo(&destroyed));
    EXPECT_EQ(destroyed.key_id(), key_id);
    EXPECT_EQ(destroyed.customer_id(), "cus_ann");
    EXPECT_FALSE(service->vault->Find(key_id).has_value());
  }
  EXPECT_TRUE(restored_leads->Stream(by_sales.key_id).empty()) << "not leads' key to destroy";
}

// Two erasures of one customer heard out of order (from two services): the
// later time holds, also after a restart, so a key issued between them and
// delivered after both stays refused.
TEST_F(KeyVaultMemoryTest, AnEarlierErasureHeardLastKeepsTheLaterErasureTime) {
  auto desk = *Service::Open(dir_.Sub("desk"), master_, "crm/service-desk", true, kCached);
  auto sealing = desk->vault->KeyFor("cus_ann", Ctx());
  ASSERT_TRUE(sealing.ok() && sealing->issue.has_value());
  auto erasure = [](const std::string& issuer, absl::Time at) {
    crm::v1::CustomerErased erased;
    erased.set_customer_id("cus_ann");
    erased.set_reason("GDPR request 41");
    EventContext ctx = Ctx();
    ctx.source = issuer;
    ctx.occurred_at = at;
    auto e = MakeEnvelope(erased, "cus_ann", ctx);
    e.set_stream(EraseStream(issuer, "cus_ann"));
    e.set_stream_version(1);
    return e;
  };
  const absl::Time issued = sealing->key.issued_at;
  {
    auto sales = *Service::Open(dir_.Sub("sales"), master_, "crm/sales", true, kCached);
    ASSERT_TRUE(sales->Apply({erasure("crm/service-desk", issued + absl::Hours(1))}).ok());
    ASSERT_TRUE(sales->Apply({erasure("crm/leads", issued - absl::Hours(1))}).ok());
  }
  auto sales = *Service::Open(dir_.Sub("sales"), master_, "crm/sales", true, kCached);
  ASSERT_TRUE(sales->Apply({sealing->issue->events.front()}).ok());
  EXPECT_FALSE(sales->vault->Find(sealing->key.key_id).has_value());
}

// The same when the earlier erasure, read from the topic, commits after
// this service's own later one was written: both are kept, and the later
// holds after a restart.
TEST_F(KeyVaultMemoryTest, AnEarlierErasureCommittedLastKeepsTheLaterErasureTime) {
  auto desk = *Service::Open(dir_.Sub("desk"), master_, "crm/service-desk", true, kCached);
  auto sealing = desk->vault->KeyFor("cus_ann", Ctx());
  ASSERT_TRUE(sealing.ok() && sealing->issue.has_value());
  const absl::Time issued = sealing->key.issued_at;
  {
    auto sales = *Service::Open(dir_.Sub("sales"), master_, "crm/sales", true, kCached);
    crm::v1::CustomerErased erased;
    erased.set_customer_id("cus_ann");
    erased.set_reason("GDPR request 42");
    EventContext earlier = Ctx();
    earlier.source = "crm/leads";
    earlier.occurred_at = issued - absl::Hours(1);
    auto record = MakeEnvelope(erased, "cus_ann", earlier);
    record.set_stream(EraseStream("crm/leads", "cus_ann"));
    record.set_stream_version(1);
    ProjectionTxn reader(sales->store->db());
    ASSERT_TRUE(sales->vault->ApplyRecord(record, reader).ok());
    EventContext later = Ctx();
    later.occurred_at = issued + absl::Hours(1);
    ASSERT_TRUE(sales->vault->EraseCustomer("cus_ann", "GDPR request 43", later).ok());
    ASSERT_TRUE(reader.Commit().ok());
  }
  auto sales = *Service::Open(dir_.Sub("sales"), master_, "crm/sales", true, kCached);
  ASSERT_TRUE(sales->Apply({sealing->issue->events.front()}).ok());
  EXPECT_FALSE(sales->vault->Find(sealing->key.key_id).has_value());
}

// A merge into the customer read from the topic while its erasure is being
// written (the key reader's thread): the merged customer is erased by the
// same call, not left with its keys until the erasure is read back.
TEST_F(KeyVaultMemoryTest, AMergeLinkedDuringAnErasureIsErasedWithIt) {
  auto sales = *Service::Open(dir_.Sub("sales"), master_, "crm/sales", true, kCached);
  auto leads = *Service::Open(dir_.Sub("leads"), master_, "crm/leads", true, kCached);
  const DataKey survivor = *sales->vault->EnsureKey("cus_s", Ctx());
  const DataKey merged = *sales->vault->EnsureKey("cus_m", Ctx());
  auto link = leads->vault->MergeRecord("lead_m", "cus_m", "cus_s", Ctx());
  ASSERT_TRUE(link.has_value());
  ASSERT_TRUE(leads->store->Append(*link).ok());
  const auto record = *leads->store->ReadStream(link->stream);
  sales->vault->BeforeErasureWriteForTest([&] { ASSERT_TRUE(sales->Apply(record).ok()); });
  auto erased = sales->vault->EraseCustomer("cus_s", "GDPR request 51", Ctx());
  ASSERT_TRUE(erased.ok()) << erased.status();
  EXPECT_EQ(erased->merged_customer_ids, std::vector<std::string>{"cus_m"});
  EXPECT_EQ(erased->keys_destroyed, 2);
  EXPECT_FALSE(sales->vault->Find(survivor.key_id).has_value());
  EXPECT_FALSE(sales->vault->Find(merged.key_id).has_value());
  EXPECT_TRUE(sales->vault->Erased("cus_m"));
  const auto records = *sales->store->ReadStream(EraseStream("crm/sales", "cus_m"));
  ASSERT_EQ(records.size(), 1u);
  crm::v1::CustomerErased payload;
  ASSERT_TRUE(records[0].payload().UnpackTo(&payload));
  EXPECT_EQ(payload.erased_with_customer_id(), "cus_s");
}

// A key record of an erased customer that this vault cannot unwrap (a
// master key it does not have) is dropped, not refused: refused, it would be
// parked on the dead-letter topic with the wrapped key.
TEST_F(KeyVaultMemoryTest, AnErasedCustomersKeyThatDoesNotUnwrapIsDroppedNotRefused) {
  auto other = *Service::Open(dir_.Sub("other"), RandomKey(), "crm/other", true, kCached);
  auto sealing = other->vault->KeyFor("cus_e", Ctx());
  ASSERT_TRUE(sealing.ok() && sealing->issue.has_value());
  const crm::v1::EventEnvelope issue = sealing->issue->events.front();
  auto sales = *Service::Open(dir_.Sub("sales"), master_, "crm/sales", true, kCached);
  EXPECT_FALSE(sales->Apply({issue}).ok()) << "not erased: refused, to be parked";
  crm::v1::CustomerErased erased;
  erased.set_customer_id("cus_e");
  EventContext at = Ctx();
  at.source = "crm/leads";
  at.occurred_at = sealing->key.issued_at + absl::Minutes(1);
  auto record = MakeEnvelope(erased, "cus_e", at);
  record.set_stream(EraseStream("crm/leads", "cus_e"));
  record.set_stream_version(1);
  ASSERT_TRUE(sales->Apply({record}).ok());
  EXPECT_TRUE(sales->Apply({issue}).ok());
  EXPECT_FALSE(sales->vault->Find(sealing->key.key_id).has_value());
}

// A key row that no longer parses does not hold the erasure up: the key
// is destroyed with the others.
TEST_F(KeyVaultMemoryTest, AnErasureDestroysAKeyWhoseRowIsDamaged) {
  auto leads = *Service::Open(dir_.Sub("leads"), master_, "crm/leads", true, kCached);
  const DataKey ann = *leads->vault->EnsureKey("cus_ann", Ctx());
  rocksdb::WriteBatch damage;
  ASSERT_TRUE(
      damage.Put(leads->store->db().Family(KeyVault::kFamily), "k" + ann.key_id, "\xff\xff").ok());
  ASSERT_TRUE(leads->store->db().Write(&damage, true).ok());
  auto erased = leads->vault->EraseCustomer("cus_ann", "GDPR request 12", Ctx());
  ASSERT_TRUE(erased.ok()) << erased.status();
  EXPECT_EQ(erased->keys_destroyed, 1);
  auto row = leads->store->db().Get(KeyVault::kFamily, "k" + ann.key_id);
  ASSERT_TRUE(row.ok());
  EXPECT_FALSE(row->has_value());
  EXPECT_FALSE(leads->vault->Find(ann.key_id).has_value());
}

// An erasure or destruction record whose payload does not parse is refused
// (the subscriber parks it for a re-drive), not applied as one naming
// nobody: the customer's key would stay usable here.
TEST_F(KeyVaultMemoryTest, ADamagedErasureOrDestructionIsRefusedNotApplied) {
  auto leads = *Service::Open(dir_.Sub("leads"), master_, "crm/leads", true, kCached);
  auto sealing = leads->vault->KeyFor("cus_d", Ctx());
  ASSERT_TRUE(sealing.ok() && sealing->issue.has_value());
  auto sales = *Service::Open(dir_.Sub("sales"), master_, "crm/sales", true, kCached);
  ASSERT_TRUE(sales->Apply({sealing->issue->events.front()}).ok());
  ASSERT_TRUE(sales->vault->Find(sealing->key.key_id).has_value());

  auto damaged = [](crm::v1::EventEnvelope e, const google::protobuf::Message& payload) {
    e.mutable_payload()->set_type_url("type.googleapis.com/" +
                                      payload.GetDescriptor()->full_name());
    e.mutable_payload()->set_value("\xff\xff\xff");
    return e;
  };
  EventContext at = Ctx();
  at.source = "crm/leads";
  crm::v1::CustomerErased erased;
  erased.set_customer_id("cus_d");
  auto erasure = MakeEnvelope(erased, "cus_d", at);
  erasure.set_stream(EraseStream("crm/leads", "cus_d"));
  erasure.set_stream_version(1);
  crm::v1::DataKeyDestroyed destroyed;
  destroyed.set_key_id(sealing->key.key_id);
  destroyed.set_customer_id("cus_d");
  auto destruction = MakeEnvelope(destroyed, "cus_d", at);
  destruction.set_stream(kKeyStreamPrefix + sealing->key.key_id);
  destruction.set_stream_version(2);
  for (const auto& bad : {damaged(erasure, erased), damaged(destruction, destroyed)}) {
    const absl::Status st = sales->Apply({bad});
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_TRUE(sales->vault->Find(sealing->key.key_id).has_value()) << bad.type();
  }
  crm::v1::CustomerErased nobody;
  auto empty = MakeEnvelope(nobody, "", at);
  empty.set_stream(EraseStream("crm/leads", "cus_d"));
  empty.set_stream_version(1);
  EXPECT_EQ(sales->Apply({empty}).code(), absl::StatusCode::kInvalidArgument);

  // Whole, the erasure destroys the key.
  ASSERT_TRUE(sales->Apply({erasure}).ok());
  EXPECT_FALSE(sales->vault->Find(sealing->key.key_id).has_value());
}

TEST_F(KeyVaultMemoryTest, AVaultWithoutTheCustomerIndexBuildsIt) {
  const std::string path = dir_.Sub("leads");
  DataKey ann;
  {
    auto leads = *Service::Open(path, master_, "crm/leads", true, kCached);
    ann = *leads->vault->EnsureKey("cus_ann", Ctx());
    // As a vault written before the index: key rows only.
    auto it = leads->store->db().NewIterator(KeyVault::kFamily);
    rocksdb::WriteBatch batch;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (it->key().starts_with("c") || it->key().starts_with("index:")) {
        ASSERT_TRUE(batch.Delete(leads->store->db().Family(KeyVault::kFamily), it->key()).ok());
      }
    }
    ASSERT_EQ(batch.Count(), 2u);
    ASSERT_TRUE(leads->store->db().Write(&batch, true).ok());
  }
  auto leads = *Service::Open(path, master_, "crm/leads", true, kCached);
  auto again = leads->vault->KeyFor("cus_ann", Ctx());
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->issue.has_value());
  EXPECT_EQ(again->key.key_id, ann.key_id);
  auto erased = leads->vault->EraseCustomer("cus_ann", "GDPR request 12", Ctx());
  ASSERT_TRUE(erased.ok());
  EXPECT_EQ(erased->keys_destroyed, 1);
  EXPECT_EQ(leads->OpenEmail(Sealed("ann@example.com", ann)), "");
}

class KeyVaultRotationTest : public ::testing::Test {
 protected:
  const Key a_ = RandomKey();
  const Key b_ = RandomKey();
  testing::TempDir dir_;
};

// Restored from a backup taken before it issued a key, a service holds the
// key as its own, read back from crm.keys.v1, with no stream for it. A
// rotation republishes it all the same: no other service does, and the
// topic would hold it only under the master key being retired.
TEST_F(KeyVaultRotationTest, AnOwnKeyReadBackFromTheTopicIsRepublishedUnderTheNewMasterKey) {
  std::vector<crm::v1::EventEnvelope> issue;
  DataKey key;
  {
    auto leads = *Service::Open(dir_.Sub("leads"), a_, "crm/leads");
    key = *leads->vault->EnsureKey("cus_1", Ctx());
    issue = leads->Stream(key.key_id);
  }
  {
    auto restored = *Service::Open(dir_.Sub("leads-restored"), a_, "crm/leads");
    ASSERT_TRUE(restored->Apply(issue).ok());
    ASSERT_TRUE(restored->Stream(key.key_id).empty());
  }
  auto restored = Service::Open(dir_.Sub("leads-restored"), MasterKeys(b_, {a_}), "crm/leads");
  ASSERT_TRUE(restored.ok()) << restored.status();
  const auto records = (*restored)->Stream(key.key_id);
  ASSERT_EQ(records.size(), 1u);
  const crm::v1::DataKeyIssued rewrapped = Issued(records[0]);
  EXPECT_EQ(rewrapped.key_id(), key.key_id);
  EXPECT_NE(rewrapped.wrapped_key(), Issued(issue[0]).wrapped_key());
  // A reader with the new master key only takes the key from it.
  auto reader = *Service::Open(dir_.Sub("analytics"), b_, "crm/analytics", false);
  ASSERT_TRUE(reader->Apply(records).ok());
  EXPECT_EQ(reader->OpenEmail(Sealed("ann@example.com", key)), "ann@example.com");
}

TEST_F(KeyVaultRotationTest, KeysUnderThePreviousMasterKeyAreReWrappedAndRepublished) {
  const std::string path = dir_.Sub("leads");
  DataKey ann_key, bob_key, sales_key;
  std::string blind;
  std::vector<crm::v1::EventEnvelope> ann_before;
  {
    auto leads = *Service::Open(path, a_, "crm/leads");
    auto sales = *Service::Open(dir_.Sub("sales"), a_, "crm/sales");
    ann_key = *leads->vault->EnsureKey("cus_1", Ctx());
    bob_key = *leads->vault->EnsureKey("cus_2", Ctx());
    sales_key = *sales->vault->EnsureKey("cus_3", Ctx());
    ASSERT_TRUE(leads->Apply(sales->Stream(sales_key.key_id)).ok())
        << "leads learns a key sales issued";
    ann_before = leads->Stream(ann_key.key_id);
    blind = BlindIndex(*leads->vault, "email", "ann@example.com");
    EXPECT_EQ(leads->vault->rewrapped(), 0);
  }
  const crm::v1::Contact ann = Sealed("ann@example.com", ann_key);
  const crm::v1::Contact bob = Sealed("bob@example.com", bob_key);
  const crm::v1::Contact carl = Sealed("carl@example.com", sales_key);
  ASSERT_EQ(ann_before.size(), 1u);

  // The new master key alone cannot read what the old one wrapped.
  auto refused = Service::Open(path, b_, "crm/leads");
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsDataLoss(refused.status())) << refused.status();

  {
    auto leads = Service::Open(path, MasterKeys(b_, {a_}), "crm/leads");
    ASSERT_TRUE(leads.ok()) << leads.status();
    // Two own keys, one learned from sales, and the blind index key.
    EXPECT_EQ((*leads)->vault->rewrapped(), 4);
    EXPECT_EQ((*leads)->OpenEmail(ann), "ann@example.com");
    EXPECT_EQ((*leads)->OpenEmail(carl), "carl@example.com");
    EXPECT_EQ(BlindIndex(*(*leads)->vault, "email", "ann@example.com"), blind);

    // An own key: its stream carries the new wrapping with the original
    // time of issue, and the old wrapping is gone from the log.
    const auto records = (*leads)->Stream(ann_key.key_id);
    ASSERT_EQ(records.size(), 2u);
    EXPECT_TRUE(Issued(records[0]).wrapped_key().empty());
    const crm::v1::DataKeyIssued rewrapped = Issued(records[1]);
    EXPECT_EQ(rewrapped.key_id(), ann_key.key_id);
    EXPECT_EQ(rewrapped.customer_id(), "cus_1");
    EXPECT_EQ(rewrapped.issuer(), "crm/leads");
    EXPECT_NE(rewrapped.wrapped_key(), Issued(ann_before[0]).wrapped_key());
    EXPECT_EQ(records[1].customer_id(), "cus_1");
    EXPECT_EQ(FromProtoTimestamp(records[1].occurred_at()),
              FromProtoTimestamp(ann_before[0].occurred_at()));
    EXPECT_EQ((*leads)->Stream(sales_key.key_id).size(), 0u)
        << "another service's key is republished by its issuer, not here";
  }
  {
    auto again = Service::Open(path, MasterKeys(b_, {a_}), "crm/leads");
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ((*again)->vault->rewrapped(), 0) << "re-wrapped once";
    EXPECT_EQ((*again)->Stream(ann_key.key_id).size(), 2u);
  }
  // The previous master key is no longer needed.
  auto leads = Service::Open(path, b_, "crm/leads");
  ASSERT_TRUE(leads.ok()) << leads.status();
  EXPECT_EQ((*leads)->OpenEmail(ann), "ann@example.com");
  EXPECT_EQ((*leads)->OpenEmail(bob), "bob@example.com");
  EXPECT_EQ((*leads)->OpenEmail(carl), "carl@example.com");
  EXPECT_EQ(BlindIndex(*(*leads)->vault, "email", "ann@example.com"), blind);
  EXPECT_EQ((*leads)->vault->EnsureKey("cus_1", Ctx())->key_id, ann_key.key_id)
      << "the same key keeps sealing";

  // A service set up after the rotation learns the key from the stream: the
  // redacted first record carries nothing, the re-wrap does.
  auto fresh = *Service::Open(dir_.Sub("fresh"), b_, "crm/analytics", /*issues=*/false);
  ASSERT_TRUE(fresh->Apply((*leads)->Stream(ann_key.key_id)).ok());
  EXPECT_EQ(fresh->OpenEmail(ann), "ann@example.com");
}

// The start after a rotation re-wraps keys a batch at a time: own keys with
// a new record on their streams, keys learned from another service as rows.
// It runs before the relay, with every issue record still in the outbox: a
// limit on the outbox must not keep the service from starting. With the
// parameter, the vault predates the customer index, which the same scan
// builds.
class KeyVaultRotationBatchTest : public KeyVaultRotationTest,
                                  public ::testing::WithParamInterface<bool> {};

TEST_P(KeyVaultRotationBatchTest, EveryKeyOfManyBatchesIsReWrappedWhateverTheOutboxHolds) {
  const bool without_index = GetParam();
  const int own = 2 * static_cast<int>(KeyVault::kScanBatch) + 400;
  constexpr int kLearned = 300;
  const std::string path = dir_.Sub("leads");
  std::vector<DataKey> own_keys, learned_keys;
  {
    auto leads = *Service::Open(path, a_, "crm/leads");
    auto sales = *Service::Open(dir_.Sub("sales"), a_, "crm/sales");
    std::vector<AppendRequest> issues;
    for (int i = 0; i < own; ++i) {
      KeyVault::Sealing sealing = *leads->vault->KeyFor(absl::StrCat("cus_", i), Ctx());
      issues.push_back(*std::move(sealing.issue));
      own_keys.push_back(sealing.key);
    }
    ASSERT_TRUE(leads->store->AppendBatch(std::move(issues)).ok());
    for (int i = 0; i < kLearned; ++i) {
      learned_keys.push_back(*sales->vault->EnsureKey(absl::StrCat("cus_s", i), Ctx()));
      ASSERT_TRUE(leads->Apply(sales->Stream(learned_keys.back().key_id)).ok());
    }
    if (without_index) {
      auto it = leads->store->db().NewIterator(KeyVault::kFamily);
      rocksdb::WriteBatch batch;
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        if (it->key().starts_with("c") || it->key().starts_with("index:")) {
          ASSERT_TRUE(batch.Delete(leads->store->db().Family(KeyVault::kFamily), it->key()).ok());
        }
      }
      ASSERT_EQ(batch.Count(), static_cast<uint32_t>(own + kLearned + 1));
      ASSERT_TRUE(leads->store->db().Write(&batch, true).ok());
    }
  }
  {
    std::vector<std::string> families = Subscriber::Families();
    families.push_back(KeyVault::kFamily);
    auto store = *EventStore::Open(path, families);
    store->SetOutboxLimit(10);
    auto vault = KeyVault::Open(store->db(), store.get(), MasterKeys(b_, {a_}), "crm/leads");
    ASSERT_TRUE(vault.ok()) << vault.status();
    EXPECT_EQ((*vault)->rewrapped(), own + kLearned + 1) << "every key and the blind index key";
    for (const DataKey& key : own_keys) {
      const auto records = *store->ReadStream(kKeyStreamPrefix + key.key_id);
      ASSERT_EQ(records.size(), 2u) << key.key_id;
      EXPECT_TRUE(Issued(records[0]).wrapped_key().empty()) << key.key_id;
      EXPECT_FALSE(Issued(records[1]).wrapped_key().empty()) << key.key_id;
    }
    for (const DataKey& key : learned_keys) {
      EXPECT_TRUE(store->ReadStream(kKeyStreamPrefix + key.key_id)->empty())
          << "sales republishes its own keys";
    }
  }
  // Every key opens without the previous master key, and the customers'
  // keys are found again (through the index) rather than issued anew.
  auto leads = Service::Open(path, b_, "crm/leads", true, /*cached_keys=*/4);
  ASSERT_TRUE(leads.ok()) << leads.status();
  for (int i = 0; i < own; ++i) {
    ASSERT_EQ((*leads)->vault->Find(own_keys[i].key_id), own_keys[i].key) << i;
  }
  for (int i = 0; i < kLearned; ++i) {
    ASSERT_EQ((*leads)->vault->Find(learned_keys[i].key_id), learned_keys[i].key) << i;
  }
  for (int i : {0, own / 2, own - 1}) {
    auto again = (*leads)->vault->KeyFor(absl::StrCat("cus_", i), Ctx());
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_FALSE(again->issue.has_value()) << i;
    EXPECT_EQ(again->key.key_id, own_keys[i].key_id) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(IndexedOrNot, KeyVaultRotationBatchTest, ::testing::Bool(),
                         [](const auto& info) {
                           return info.param ? "WithoutTheCustomerIndex" : "WithTheIndex";
                         });

// Keys are re-wrapped a batch at a time, in key order: a rotation cut
// short leaves the first keys under the new master key and the rest under
// the old one. A start without the old one is refused, not one that opens
// the first keys and shows every later customer's data empty: by the
// issuer of the keys and by a service that only reads them alike.
TEST_F(KeyVaultRotationTest, ARotationCutShortRefusesAStartWithoutThePreviousMasterKey) {
  const int keys = static_cast<int>(KeyVault::kScanBatch) + 100;
  std::vector<DataKey> issued;
  std::vector<crm::v1::EventEnvelope> records;
  {
    auto leads = *Service::Open(dir_.Sub("leads"), a_, "crm/leads");
    std::vector<AppendRequest> issues;
    for (int i = 0; i < keys; ++i) {
      KeyVault::Sealing sealing = *leads->vault->KeyFor(absl::StrCat("cus_", i), Ctx());
      records.push_back(sealing.issue->events.front());
      issues.push_back(*std::move(sealing.issue));
      issued.push_back(sealing.key);
    }
    ASSERT_TRUE(leads->store->AppendBatch(std::move(issues)).ok());
    auto reader = *Service::Open(dir_.Sub("analytics"), a_, "crm/analytics", /*issues=*/false);
    ASSERT_TRUE(reader->Apply(records).ok());
  }
  for (const bool issues : {true, false}) {
    const std::string path = dir_.Sub(issues ? "leads" : "analytics");
    const std::string issuer = issues ? "crm/leads" : "crm/analytics";
    {
      // The rotation's start dies in its second batch: a batch is three
      // writes for the issuer (redactions, new records, rows), one for a
      // reader (rows).
      std::vector<std::string> families = Subscriber::Families();
      families.push_back(KeyVault::kFamily);
      auto store = *EventStore::Open(path, families);
      store->db().FailWritesForTest(/*every=*/issues ? 5 : 3, /*times=*/1);
      auto cut =
          KeyVault::Open(store->db(), issues ? store.get() : nullptr, MasterKeys(b_, {a_}), issuer);
      ASSERT_FALSE(cut.ok()) << issuer;
    }
    auto refused = Service::Open(path, b_, issuer, issues);
    ASSERT_FALSE(refused.ok()) << issuer;
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
    // Started with the previous key once more, the rotation ends; then the
    // old key can go.
    ASSERT_TRUE(Service::Open(path, MasterKeys(b_, {a_}), issuer, issues).ok()) << issuer;
    auto rotated = Service::Open(path, b_, issuer, issues);
    ASSERT_TRUE(rotated.ok()) << rotated.status();
    for (const DataKey& key : {issued.front(), issued.back()}) {
      EXPECT_TRUE((*rotated)->vault->Find(key.key_id).has_value()) << issuer << " " << key.key_id;
    }
  }
}

TEST_F(KeyVaultRotationTest, ConsumersKeepHeldKeysAndTakeTheNewWrapping) {
  DataKey key;
  crm::v1::EventEnvelope old_record;
  {
    auto leads = *Service::Open(dir_.Sub("leads"), a_, "crm/leads");
    key = *leads->vault->EnsureKey("cus_1", Ctx());
    old_record = leads->Stream(key.key_id).front();
    auto analytics = *Service::Open(dir_.Sub("analytics"), a_, "crm/analytics", false);
    ASSERT_TRUE(analytics->Apply({old_record}).ok());
  }
  const crm::v1::Contact ann = Sealed("ann@example.com", key);
  auto leads = *Service::Open(dir_.Sub("leads"), MasterKeys(b_, {a_}), "crm/leads");
  const crm::v1::EventEnvelope new_record = leads->Stream(key.key_id).back();
  ASSERT_EQ(new_record.stream_version(), 2);

  {
    // Not rotated yet: the new wrapping does not open with its key, but the
    // key is held, so the record changes nothing and breaks nothing.
    auto analytics = *Service::Open(dir_.Sub("analytics"), a_, "crm/analytics", false);
    ASSERT_TRUE(analytics->Apply({new_record}).ok());
    EXPECT_EQ(analytics->OpenEmail(ann), "ann@example.com");
  }
  {
    // Rotated: its own row is re-wrapped (read-only vaults too, without a
    // blind index key), and later records of either wrapping are fine.
    auto analytics = Service::Open(dir_.Sub("analytics"), MasterKeys(b_, {a_}), "crm/analytics",
                                   /*issues=*/false);
    ASSERT_TRUE(analytics.ok()) << analytics.status();
    EXPECT_EQ((*analytics)->vault->rewrapped(), 1);
    ASSERT_TRUE((*analytics)->Apply({new_record, old_record}).ok());
    EXPECT_EQ((*analytics)->OpenEmail(ann), "ann@example.com");
    // The row holds the issuer's new wrapping, not the old one after it.
    auto row = (*analytics)->store->db().Get(KeyVault::kFamily, "k" + key.key_id);
    ASSERT_TRUE(row.ok() && row->has_value());
    crm::v1::EventEnvelope stored;
    ASSERT_TRUE(stored.ParseFromString(**row));
    EXPECT_EQ(Issued(stored).wrapped_key(), Issued(new_record).wrapped_key());
  }
  auto analytics = Service::Open(dir_.Sub("analytics"), b_, "crm/analytics", false);
  ASSERT_TRUE(analytics.ok()) << analytics.status();
  EXPECT_EQ((*analytics)->OpenEmail(ann), "ann@example.com");

  // A topic not compacted yet still has the old wrapping. A new service
  // with only the new master key cannot take it (the subscriber parks it)
  // and gets the key from the re-wrap; one that still has the previous key
  // stores it under the current key at once.
  auto rebuilt = *Service::Open(dir_.Sub("rebuilt"), b_, "crm/analytics", false);
  EXPECT_TRUE(absl::IsDataLoss(rebuilt->Apply({old_record})));
  ASSERT_TRUE(rebuilt->Apply({new_record}).ok());
  EXPECT_EQ(rebuilt->OpenEmail(ann), "ann@example.com");
  {
    auto during = *Service::Open(dir_.Sub("during"), MasterKeys(b_, {a_}), "crm/analytics", false);
    ASSERT_TRUE(during->Apply({old_record}).ok());
  }
  auto during = Service::Open(dir_.Sub("during"), b_, "crm/analytics", false);
  ASSERT_TRUE(during.ok()) << during.status();
  EXPECT_EQ((*during)->OpenEmail(ann), "ann@example.com");
}

TEST_F(KeyVaultRotationTest, ErasureAfterRotationDestroysTheKeyAndRedactsEveryWrapping) {
  DataKey key;
  {
    auto leads = *Service::Open(dir_.Sub("leads"), a_, "crm/leads");
    key = *leads->vault->EnsureKey("cus_1", Ctx());
  }
  const crm::v1::Contact ann = Sealed("ann@example.com", key);
  {
    auto leads = *Service::Open(dir_.Sub("leads"), MasterKeys(b_, {a_}), "crm/leads");
    auto destroyed = leads->vault->EraseCustomer("cus_1", "GDPR request 9", Ctx());
    ASSERT_TRUE(destroyed.ok()) << destroyed.status();
    EXPECT_EQ(destroyed->keys_destroyed, 1);
    EXPECT_EQ(leads->OpenEmail(ann), "");
    const auto records = leads->Stream(key.key_id);
    ASSERT_EQ(records.size(), 3u) << "issue, re-wrap, destruction";
    EXPECT_TRUE(Issued(records[0]).wrapped_key().empty());
    EXPECT_TRUE(Issued(records[1]).wrapped_key().empty());
    EXPECT_TRUE(records[2].payload().Is<crm::v1::DataKeyDestroyed>());
    EXPECT_TRUE(leads->vault->EraseCustomer("cus_1", "again", Ctx()).ok());
    EXPECT_EQ(leads->Stream(key.key_id).size(), 3u) << "destroyed once";
  }
  auto leads = Service::Open(dir_.Sub("leads"), b_, "crm/leads");
  ASSERT_TRUE(leads.ok()) << leads.status();
  EXPECT_EQ((*leads)->OpenEmail(ann), "");
}

TEST_F(KeyVaultRotationTest, AKeyRowWrittenBackAfterTheErasureIsNotLoaded) {
  DataKey key;
  std::string wrapped;
  {
    auto leads = *Service::Open(dir_.Sub("leads"), a_, "crm/leads");
    key = *leads->vault->EnsureKey("cus_1", Ctx());
    const crm::v1::EventEnvelope issue = leads->Stream(key.key_id).front();
    ASSERT_TRUE(leads->vault->EraseCustomer("cus_1", "GDPR request 10", Ctx()).ok());
    ASSERT_TRUE(leads->vault->PurgeDestroyed().ok());  // the erasure's purge is done
    // A key record applied while the erasure ran commits its rows after it.
    rocksdb::WriteBatch batch;
    auto* family = leads->store->db().Family(KeyVault::kFamily);
    ASSERT_TRUE(batch.Put(family, "k" + key.key_id, issue.SerializeAsString()).ok());
    ASSERT_TRUE(batch.Put(family, std::string("ccus_1\0", 7) + key.key_id, "crm/leads").ok());
    ASSERT_TRUE(leads->store->db().Write(&batch, true).ok());
    ASSERT_TRUE(leads->store->db().Flush().ok());
    wrapped = Issued(issue).wrapped_key();
  }
  // Not loaded, and removed.
  auto leads = Service::Open(dir_.Sub("leads"), a_, "crm/leads");
  ASSERT_TRUE(leads.ok()) << leads.status();
  EXPECT_EQ((*leads)->OpenEmail(Sealed("ann@example.com", key)), "");
  for (const std::string& row_key : {"k" + key.key_id, std::string("ccus_1\0", 7) + key.key_id}) {
    auto row = (*leads)->store->db().Get(KeyVault::kFamily, row_key);
    ASSERT_TRUE(row.ok());
    EXPECT_FALSE(row->has_value()) << row_key;
  }
  EXPECT_TRUE((*leads)->vault->KeyFor("cus_1", Ctx())->issue.has_value())
      << "a new key: the written-back one is not the customer's";
  EXPECT_TRUE(PurgedFrom(dir_.Sub("leads"), wrapped)) << "and compacted away";
}

TEST_F(KeyVaultRotationTest, BlindIndexKeyOfExistingDataIsDerivedFromItsMasterKey) {
  const std::string value = "ann@example.com";
  // Before the key was stored it was derived from the master key; data
  // indexed then must keep matching.
  const std::string mac = Hmac(DeriveKey(a_, "crm pii blind index v1"), "email:" + value);
  const std::string derived =
      absl::StrCat("email#", absl::WebSafeBase64Escape(absl::string_view(mac).substr(0, 16)));
  {
    auto leads = *Service::Open(dir_.Sub("leads"), a_, "crm/leads");
    EXPECT_EQ(BlindIndex(*leads->vault, "email", value), derived);
    ASSERT_TRUE(leads->vault->EnsureKey("cus_1", Ctx()).ok());
    // As a database written before the key was stored.
    rocksdb::WriteBatch batch;
    ASSERT_TRUE(batch.Delete(leads->store->db().Family(KeyVault::kFamily), "blind-index").ok());
    ASSERT_TRUE(leads->store->db().Write(&batch, true).ok());
  }
  {
    // Upgraded and rotated at once: the key comes from the master key the
    // stored data keys were wrapped under, not from the new one.
    auto leads = Service::Open(dir_.Sub("leads"), MasterKeys(b_, {a_}), "crm/leads");
    ASSERT_TRUE(leads.ok()) << leads.status();
    EXPECT_EQ(BlindIndex(*(*leads)->vault, "email", value), derived);
  }
  auto leads = Service::Open(dir_.Sub("leads"), b_, "crm/leads");
  ASSERT_TRUE(leads.ok()) << leads.status();
  EXPECT_EQ(BlindIndex(*(*leads)->vault, "email", value), derived);
}

TEST_F(KeyVaultRotationTest, StoredBlindIndexKeyUnderAnotherMasterKeyIsRefused) {
  // No data keys yet, only the blind index key: it alone stops the service
  // like a data key would, rather than breaking every dedupe lookup.
  ASSERT_TRUE(Service::Open(dir_.Sub("leads"), a_, "crm/leads").ok());
  auto other = Service::Open(dir_.Sub("leads"), b_, "crm/leads");
  EXPECT_TRUE(absl::IsDataLoss(other.status())) << other.status();
  EXPECT_TRUE(Service::Open(dir_.Sub("leads"), MasterKeys(b_, {a_}), "crm/leads").ok());
  EXPECT_TRUE(Service::Open(dir_.Sub("leads"), b_, "crm/leads").ok());
}

}  // namespace
}  // namespace crm::pii
