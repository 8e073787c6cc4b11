#include "services/poller/pg_event_relay.h"

#include <poll.h>

#include <random>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "services/poller/convert.h"

namespace anchord::poller {
namespace {

constexpr char kChannel[] = "anchord_poller_events";
// PostgreSQL's limit is 8000 bytes per payload; leave room for the prefix.
constexpr size_t kMaxInline = 7800;
// Events waiting to be sent; beyond this (database down for long) the oldest are dropped.
constexpr size_t kMaxOutbox = 100000;

std::string RandomOrigin() {
  std::random_device rd;
  uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return HexEncode(std::string(reinterpret_cast<const char*>(&v), sizeof(v)));
}

}  // namespace

PgEventRelay::PgEventRelay(std::shared_ptr<ledger::PgDb> db, EventBus* bus, PollerStore* store,
                           Clock* clock)
    : db_(std::move(db)),
      bus_(bus),
      store_(store),
      clock_(clock ? clock : Clock::Real()),
      origin_(RandomOrigin()) {}

PgEventRelay::~PgEventRelay() {
  bus_->SetRelay(nullptr);
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    cv_.SignalAll();
  }
  if (sender_.joinable()) sender_.join();
  if (listener_.joinable()) listener_.join();
}

void PgEventRelay::Start() {
  bus_->SetRelay([this](const anchord::v1::WatchResponse& ev) { Enqueue(ev); });
  sender_ = std::thread([this] { SendLoop(); });
  listener_ = std::thread([this] { ListenLoop(); });
  // Wait (bounded) until the listener is subscribed, so events published right after Start()
  // by another replica are not missed.
  absl::MutexLock lock(&mu_);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!listening_ && !stop_) {
    if (cv_.WaitWithDeadline(&mu_, deadline)) break;
  }
}

bool PgEventRelay::Stopping() {
  absl::MutexLock lock(&mu_);
  return stop_;
}

void PgEventRelay::SetListening(bool listening) {
  absl::MutexLock lock(&mu_);
  listening_ = listening;
  cv_.SignalAll();
}

void PgEventRelay::Enqueue(const anchord::v1::WatchResponse& ev) {
  std::string payload;
  std::string bytes;
  ev.SerializeToString(&bytes);
  std::string b64 = absl::Base64Escape(bytes);
  if (b64.size() <= kMaxInline) {
    payload = absl::StrCat("e|", origin_, "|", b64);
  } else {
    payload = absl::StrCat("r|", origin_, "|", static_cast<int>(ev.type()), "|",
                           absl::Base64Escape(ev.proof().provider()), "|",
                           HexEncode(ev.proof().digest()));
  }
  absl::MutexLock lock(&mu_);
  if (outbox_.size() >= kMaxOutbox) {
    outbox_.pop_front();
    ANCHORD_LOG(Warning) << "event relay: outbox full, dropping the oldest event";
  }
  outbox_.push_back(std::move(payload));
  cv_.SignalAll();
}

void PgEventRelay::SendLoop() {
  while (true) {
    std::vector<std::string> batch;
    {
      absl::MutexLock lock(&mu_);
      while (!stop_ && outbox_.empty()) cv_.Wait(&mu_);
      if (stop_) return;
      while (!outbox_.empty() && batch.size() < 100) {
        batch.push_back(std::move(outbox_.front()));
        outbox_.pop_front();
      }
    }
    // One transaction per batch: notifications are delivered at commit, in order.
    absl::Status st = db_->Tx([&](ledger::PgConn& c) -> absl::Status {
      for (const std::string& p : batch) {
        auto r = c.Exec("SELECT pg_notify($1, $2)", ledger::PgParams().Add(kChannel).Add(p));
        if (!r.ok()) return r.status();
      }
      return absl::OkStatus();
    });
    if (!st.ok()) {
      ANCHORD_LOG(Warning) << "event relay: " << batch.size() << " events not sent to other "
                           << "replicas: " << st;
    }
  }
}

bool PgEventRelay::Listen(ledger::PgConn* conn) {
  auto r = conn->Exec(absl::StrCat("LISTEN ", kChannel));
  if (!r.ok()) {
    ANCHORD_LOG(Warning) << "event relay: LISTEN: " << r.status();
    return false;
  }
  return true;
}

void PgEventRelay::ListenLoop() {
  std::unique_ptr<ledger::PgConn> conn;
  bool lost = false;  // the connection dropped after it had listened: events may be missed
  while (!Stopping()) {
    if (conn == nullptr || !conn->ok()) {
      bool up = false;
      if (conn == nullptr) {
        auto c = db_->Connect();
        if (c.ok()) conn = std::move(*c);
      } else {
        (void)conn->Reset();
      }
      if (conn != nullptr && conn->ok()) up = Listen(conn.get());
      if (up) {
        if (lost) {
          ANCHORD_LOG(Warning) << "event relay: reconnected; ending watches that may have missed "
                                  "events (clients re-read the current state)";
          bus_->DropAll();
        }
        SetListening(true);
      } else {
        // Retry in 500 ms, or stop sooner.
        absl::MutexLock lock(&mu_);
        const absl::Time deadline = absl::Now() + absl::Milliseconds(500);
        while (!stop_ && !cv_.WaitWithDeadline(&mu_, deadline)) {
        }
        continue;
      }
    }
    // Wait for a notification (bounded, so stop_ is seen).
    pollfd pfd{PQsocket(conn->raw()), POLLIN, 0};
    int n = pfd.fd >= 0 ? poll(&pfd, 1, 200) : -1;
    if (n != 0) {
      if (n < 0 || PQconsumeInput(conn->raw()) == 0 || PQstatus(conn->raw()) != CONNECTION_OK) {
        ANCHORD_LOG(Warning) << "event relay: listener connection lost: " << conn->LastError();
        lost = true;
        (void)conn->Reset();
        SetListening(false);
        continue;
      }
      while (PGnotify* note = PQnotifies(conn->raw())) {
        std::string payload = note->extra ? note->extra : "";
        PQfreemem(note);
        Handle(payload);
      }
    }
  }
}

void PgEventRelay::Handle(const std::string& payload) {
  std::vector<std::string> parts = absl::StrSplit(payload, '|');
  if (parts.size() < 3 || parts[1] == origin_) return;  // malformed, or our own event
  anchord::v1::WatchResponse ev;
  if (parts[0] == "e" && parts.size() == 3) {
    std::string bytes;
    if (!absl::Base64Unescape(parts[2], &bytes) || !ev.ParseFromString(bytes)) return;
  } else if (parts[0] == "r" && parts.size() == 5) {
    int type = 0;
    std::string provider;
    absl::StatusOr<Digest> digest = Digest::FromHex(parts[4]);
    if (!absl::SimpleAtoi(parts[2], &type) || !anchord::v1::ProofEventType_IsValid(type) ||
        !absl::Base64Unescape(parts[3], &provider) || !digest.ok()) {
      return;
    }
    auto row = store_->Get(*digest, provider);
    if (!row.ok() || !row->has_value()) return;
    ev = MakeEvent(static_cast<anchord::v1::ProofEventType>(type), **row, clock_->Now());
  } else {
    return;
  }
  ++delivered_;
  bus_->Deliver(std::move(ev));
}

}  // namespace anchord::poller
