#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crm/v1/envelope.pb.h"
#include "crm/v1/pii.pb.h"
#include "libs/common/bounded_cache.h"
#include "libs/common/database.h"
#include "libs/common/envelope.h"
#include "libs/common/event_store.h"
#include "libs/common/pii/cipher.h"
#include "libs/common/pii/key_stream.h"
#include "libs/common/subscriber.h"
#include "rocksdb/write_batch.h"

namespace crm::pii {

// A data key ready to seal with.
struct DataKey {
  std::string key_id;
  Key key;
  // When a new key was made (NewKey): an erasure after it destroys it.
  absl::Time issued_at = absl::InfinitePast();
  // The customer's erasure the issuer knew of (DataKeyIssued's
  // issued_after_erasure_at); InfinitePast: none.
  absl::Time after_erasure = absl::InfinitePast();
};

// How far the clocks of two services may be apart for erasure: a key issued
// by a service that had not heard of an erasure is ended by it if issued
// before the erasure's time plus this.
inline constexpr absl::Duration kErasureClockSkew = absl::Minutes(5);

// The data keys a service holds, in its own RocksDB (family kFamily), each
// stored wrapped with the master key; memory holds only the recently used
// ones, unwrapped, so RSS and start time do not grow with the customers:
//   "k" key_id       -> DataKeyIssued (wrapped key)
//   "c" customer_id \0 key_id -> issuer: the customer's keys
//   "e" customer_id  -> erased at (unix micros, big-endian): keys of the
//                       customer issued before then are refused
//   "blind-index"    -> the blind index key, wrapped (services that issue
//                       keys only)
//   "m" merged_lead  -> CustomersMerged: erasing the survivor customer
//                       erases the merged one too
//   "index:customers" -> present once every key has its "c" row
//   "p" key_id       -> "own" or "": a destroyed key whose old copies in
//                       the data files are not compacted away yet
//                       (PurgeDestroyed)
// Erasures and merges are few and stay in memory.
// A service issues keys for the customers whose data it seals and learns
// every other service's keys from crm.keys.v1 (ApplyRecord), so it can read
// what they sealed.
//
// Master key rotation: Open unwraps with the current master key, then with
// the previous ones, and re-wraps under the current key whatever only a
// previous key opened. For its own keys the service also appends a new
// DataKeyIssued (same key, same customer, the original time of issue) to
// the key's stream, so crm.keys.v1 carries the new wrapping, and removes
// the old wrapping from its own log.
class KeyVault {
 public:
  static constexpr char kFamily[] = "pii_keys";
  // Unwrapped keys kept in memory (about 200 bytes each), and as many
  // customers' current key ids.
  static constexpr size_t kCachedKeys = 1 << 16;
  // Key rows handled per write while the key rows are scanned at start
  // (re-wrapping, building the customer index).
  static constexpr size_t kScanBatch = 1024;

  // Loads every key in `db`, re-wrapping those stored under a previous
  // master key. `store` is the service's event log, where issued keys and
  // erasures are appended (the relay publishes them); nullptr for a service
  // that only reads. `issuer` is the service's event source, e.g.
  // "crm/leads". DATA_LOSS when a stored key opens with none of `masters`.
  static absl::StatusOr<std::unique_ptr<KeyVault>> Open(Database& db, EventStore* store,
                                                        const MasterKeys& masters,
                                                        std::string issuer,
                                                        size_t cached_keys = kCachedKeys);

  // A key for sealing the customer's data. When the vault has none, a new
  // key and, in `issue`, the append that records it: append it with (or
  // before) the events it seals, then call Issued. Sealing without
  // appending loses the data.
  struct Sealing {
    DataKey key;
    std::optional<AppendRequest> issue;
  };
  // Fails only when the stored keys cannot be read.
  absl::StatusOr<Sealing> KeyFor(const std::string& customer_id, const EventContext& ctx) const;
  // KeyFor without the lookup, for a customer id minted just now (which
  // can have no key yet): always a new key and its issue.
  Sealing NewKey(const std::string& customer_id, const EventContext& ctx) const;
  // Makes a key whose issue was appended usable for reading.
  void Issued(const std::string& customer_id, const DataKey& key);
  // KeyFor, append and Issued in one, for paths that seal outside a batch.
  absl::StatusOr<DataKey> EnsureKey(const std::string& customer_id, const EventContext& ctx);

  // The key `key_id` if this vault holds it (not destroyed).
  std::optional<Key> Find(absl::string_view key_id) const;

  // A record consumed from crm.keys.v1, ours or another service's. Unknown
  // types are INVALID_ARGUMENT (the subscriber parks them). An issue record
  // of a key held here replaces the stored one only when it unwraps with
  // the current master key (its issuer re-wrapped it); older wrappings,
  // still on a topic until compaction, change nothing. An issue record of
  // a key not held that opens with no master key is DATA_LOSS (parked).
  absl::Status ApplyRecord(const crm::v1::EventEnvelope& event, ProjectionTxn& txn);

  // A RocksDB delete or overwrite only adds a newer entry: a destroyed
  // key's wrapped key stays readable in the WAL and the table files until a
  // compaction meets both. Each destruction therefore writes a purge row
  // ("p" key id) with it, and a thread of the vault's, woken by
  // RequestPurge (EraseCustomer; the key reader once a batch committed) and
  // at open, flushes every memtable (ending the WAL files that held the
  // keys) and compacts the pending keys' rows, and own keys' streams, down
  // to the last level, then deletes the purge rows. A second's wait
  // first makes a run of erasures one flush; a failed purge is tried again
  // 30 s later, and at the next open.
  void RequestPurge();
  // Purges the pending keys now (the thread's work; tests call it).
  absl::Status PurgeDestroyed();
  ~KeyVault();

  // The record linking two customers when leads of both merge (nullopt
  // when they are one customer): append it with the merge, then call
  // Merged. The survivor's records hold data sealed for the merged
  // customer from then on, so its erasure must reach that key too.
  std::optional<AppendRequest> MergeRecord(const std::string& merged_lead_id,
                                           const std::string& merged_customer_id,
                                           const std::string& survivor_customer_id,
                                           const EventContext& ctx) const;
  // Makes an appended merge record known for erasures (nothing for one
  // customer).
  void Merged(const std::string& merged_customer_id, const std::string& survivor_customer_id);

  struct Erasure {
    // Keys this vault held for the customers erased, destroyed now.
    int keys_destroyed = 0;
    // Customers merged into the one erased (directly or not), erased too.
    std::vector<std::string> merged_customer_ids;
  };
  // Erases the customer everywhere, with every customer merged into it:
  // appends one CustomerErased each (relayed to every service) and
  // destroys the keys held here at once.
  absl::StatusOr<Erasure> EraseCustomer(const std::string& customer_id, const std::string& reason,
                                        const EventContext& ctx);
  // Runs `hook` in EraseCustomer after it has found the customers to erase
  // and before it writes (a merge landing meanwhile).
  void BeforeErasureWriteForTest(std::function<void()> hook) {
    before_erasure_write_for_test_ = std::move(hook);
  }

  // Whether this vault records erasures (it has an event log to append to).
  bool can_erase() const { return store_ != nullptr; }
  // The customer first, then every customer merged into it (transitively):
  // one person, for an export as for an erasure.
  std::vector<std::string> WithMerged(const std::string& customer_id) const;
  // Whether the customer was erased (as far as this vault has heard).
  bool Erased(const std::string& customer_id) const;
  // When the customer was last erased; nullopt if never. A person may come
  // back under the same id after an erasure, with a new key.
  std::optional<absl::Time> LatestErasure(const std::string& customer_id) const;
  // The customer that `customer_id` was merged into, following later
  // merges; `customer_id` itself when it was not merged.
  std::string SurvivorOf(const std::string& customer_id) const;

  // The key that derives blind-index values (HMAC of normalized contact
  // data) for dedupe lookups without storing the data itself.
  // Kept wrapped in the vault, so it survives master key rotation.
  const Key& blind_index_key() const { return blind_index_key_; }

  // Stored keys (data keys and the blind index key) that Open re-wrapped
  // under the current master key.
  int rewrapped() const { return rewrapped_; }

 private:
  struct Entry {
    std::string customer_id;
    Key key;
    absl::Time issued_at;
    bool own = false;
    absl::Time after_erasure = absl::InfinitePast();  // see DataKey
  };

  // An entry and which master key opened it: 0 the current one, i > 0
  // previous[i - 1].
  struct Unwrapped {
    Entry entry;
    size_t master = 0;
  };

  struct Token {};

 public:
  KeyVault(Token, Database& db, EventStore* store, const MasterKeys& masters, std::string issuer,
           size_t cached_keys);

 private:
  // A key of the customer, as its "c" row tells.
  struct HeldKey {
    std::string key_id;
    bool own = false;
  };

  // Loads erasures and merges. Reads every key row only when `every_key`
  // (previous master keys are configured: stale wrappings are re-wrapped)
  // or when the customer index is missing (it is built); otherwise checks
  // one key row, so a wrong master key still stops the service at start.
  absl::Status Load(bool every_key);
  // One pass over the key rows: deletes dead ones, writes missing "c" rows
  // when `index`, re-wraps stale ones. Returns the master key index the
  // data keys were wrapped under.
  absl::StatusOr<size_t> ScanKeys(bool index);
  // Deletes the rows of keys issued before their customer's erasure, which
  // a key record applied while the erasure ran can write back (the
  // erasure time already keeps them from being used).
  absl::Status DeleteErasedKeys();
  absl::StatusOr<Unwrapped> Unwrap(const crm::v1::EventEnvelope& issued) const;
  // The wrapped key of a DataKeyIssued under the current master key.
  std::string Wrap(const Key& key, absl::string_view key_id) const;
  // Reads the stored blind index key, or stores the one derived from the
  // master key `legacy_master` (index as in Unwrapped) when there is none.
  absl::Status LoadBlindIndexKey(size_t legacy_master);
  // A key row that opened with a previous master key.
  struct StaleKey {
    std::string key_id;
    crm::v1::EventEnvelope stored;
    Entry entry;
  };
  // Stores the `stale` keys wrapped under the current master key: an own
  // key's row with a new record on its stream, any other key's row into
  // `rows`. One write redacts the own keys' earlier wrappings, one batch
  // appends their records: a synced write per key made a rotation of 100k
  // keys take a minute.
  absl::Status Rewrap(const std::vector<StaleKey>& stale, rocksdb::WriteBatch& rows);
  // The key from memory or the database; nullopt when not held or issued
  // before its customer was erased.
  absl::StatusOr<std::optional<Key>> LoadKey(absl::string_view key_id) const;
  // The customer's keys stored in the database.
  absl::StatusOr<std::vector<HeldKey>> CustomerKeys(const std::string& customer_id) const;
  // Those of them an erasure at `erased_at` ends (EndedBy). A key issued
  // after it by a service that knew of it (the person came back) is the
  // customer's new key, which a redelivered or late-read erasure must not
  // destroy. A key whose row is gone is ended too: its "c" row is all that
  // is left.
  absl::StatusOr<std::vector<HeldKey>> KeysErasedAt(const std::string& customer_id,
                                                    absl::Time erased_at) const;
  // Whether an erasure at `erased_at` ends a key issued at `issued_at` by
  // an issuer that knew of the customer's erasure at `after_erasure`
  // (InfinitePast: of none). Decided by the record alone, so every service
  // and every rebuild agrees, whatever order it reads them in.
  static bool EndedBy(absl::Time issued_at, absl::Time after_erasure, absl::Time erased_at);
  // Whether the entry's customer was erased after it was issued; mu_ held.
  bool ErasedLocked(const Entry& entry) const;
  // The same for a stored key row, without unwrapping it.
  bool IssuedBeforeErasure(const crm::v1::EventEnvelope& row) const;
  // Records the erasure and drops the customer's keys from memory; returns
  // the own ones of `held`, whose destruction this service publishes.
  std::vector<std::string> Forget(const std::string& customer_id, absl::Time erased_at,
                                  const std::vector<HeldKey>& held);
  // Publishes DataKeyDestroyed for own keys and removes their key material
  // from the event log.
  absl::Status DestroyOwn(const std::vector<std::string>& key_ids, const std::string& customer_id,
                          const EventContext& ctx);
  // The customer and, transitively, every customer merged into it; mu_ held.
  std::vector<std::string> WithMergedLocked(const std::string& customer_id) const;
  // Applies an erasure read from another service (or the own one, read
  // back) to these customers: their rows, memory and own keys.
  absl::Status ApplyErasure(const std::vector<std::string>& customers, absl::Time erased_at,
                            const crm::v1::EventEnvelope& record, ProjectionTxn& txn);
  // One round of EraseCustomer: erases `customers` (customer_id, or ones
  // merged into it) in one write and adds them to `out`.
  absl::Status EraseRound(const std::string& customer_id, const std::vector<std::string>& customers,
                          const std::string& reason, const EventContext& ctx, Erasure& out);
  // Records a merge in merged_into_; mu_ held.
  void LinkLocked(const std::string& merged_customer_id, const std::string& survivor_customer_id);
  // The rows that record the customer as erased and its keys as destroyed.
  std::vector<ProjectionWrite> ErasureWrites(const std::string& customer_id, absl::Time erased_at,
                                             const std::vector<HeldKey>& held) const;
  // The purge thread: PurgeDestroyed when asked, a second later.
  void PurgeLoop();

  Database& db_;
  EventStore* const store_;
  // Derived from MasterKeys: [0] the current master key, then the previous.
  const std::vector<Key> wrap_keys_;
  const std::vector<Key> derived_blind_index_keys_;
  Key blind_index_key_;
  const std::string issuer_;
  int rewrapped_ = 0;

  mutable std::mutex mu_;
  mutable BoundedCache<std::string, Entry> keys_;               // by key id
  mutable BoundedCache<std::string, std::string> by_customer_;  // a key id to seal with
  // Counts keys dropped (erasure, destruction): a key read from the
  // database is cached only if none was dropped while it was being read.
  uint64_t drops_ = 0;
  absl::flat_hash_map<std::string, absl::Time> erased_;
  // Survivor customer -> customers merged into it.
  absl::flat_hash_map<std::string, std::vector<std::string>> merged_into_;
  // Merged customer -> the survivor of its latest merge.
  absl::flat_hash_map<std::string, std::string> survivor_of_;
  std::function<void()> before_erasure_write_for_test_;
  std::mutex purge_mu_;  // one PurgeDestroyed at a time
  std::mutex wake_mu_;
  std::condition_variable wake_;
  bool purge_wanted_ = false;  // wake_mu_
  bool stopping_ = false;      // wake_mu_
  std::thread purger_;
};

// A subscriber's projection that hands key records (crm.keys.v1) to the
// vault and every other event to `inner` (none for a service that only
// needs the keys).
class WithKeyRecords final : public Projection {
 public:
  WithKeyRecords(KeyVault& vault, Projection* inner) : vault_(vault), inner_(inner) {}

  void BeginBatch() override {
    if (inner_ != nullptr) inner_->BeginBatch();
  }
  absl::Status Apply(const crm::v1::EventEnvelope& event, ProjectionTxn& txn) override {
    if (IsKeyRecordStream(event.stream())) return vault_.ApplyRecord(event, txn);
    return inner_ != nullptr ? inner_->Apply(event, txn) : absl::OkStatus();
  }
  absl::Status Flush(ProjectionTxn& txn) override {
    return inner_ != nullptr ? inner_->Flush(txn) : absl::OkStatus();
  }
  void Committed() override {
    vault_.RequestPurge();
    if (inner_ != nullptr) inner_->Committed();
  }

 private:
  KeyVault& vault_;
  Projection* const inner_;
};

// Reads every partition of crm.keys.v1 into a vault, on a consumer group
// of its own: the key records are partitioned by key, not by customer, so
// a replica whose domain group shares the topics out with others still
// needs all of them. Start it first and hold the domain subscriber until
// reached_start() (SubscriberOptions::start_when): every erasure on the
// topic when it started is then known before the events whose data it
// erases are applied. Later key records keep coming while the domain
// subscriber runs: waiting for a lag of 0 could wait for as long as keys
// are being issued.
class KeySubscriber {
 public:
  // `db` is the vault's database: the offsets are stored with the keys.
  KeySubscriber(Database& db, KeyVault& vault, const std::string& brokers,
                const std::string& group_id);
  absl::Status Start() { return subscriber_.Start(); }
  void Stop() { subscriber_.Stop(); }
  bool reached_start() const { return subscriber_.reached_start(); }

  // Starts one on group "<domain group>-keys" (every partition assigned,
  // not shared: each replica reads every key record, and the offsets are in
  // the database) and holds the subscriber of `domain` (its start_when)
  // until it has caught up. Outlives that one.
  static absl::StatusOr<std::unique_ptr<KeySubscriber>> StartBefore(Database& db, KeyVault& vault,
                                                                    SubscriberOptions& domain);

 private:
  WithKeyRecords records_;
  Subscriber subscriber_;
};

}  // namespace crm::pii
