#include "services/anchorctl/proof_fetch.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "anchord/v1/poller.grpc.pb.h"
#include "libs/ots/ots.h"
#include "services/anchorctl/command_common.h"

namespace anchord::anchorctl {
namespace {

namespace v1 = anchord::v1;

// A DownloadProofs answer that breaks the method's contract: the call is cancelled and every
// proof of it not answered yet gets this.
absl::Status Broken(const std::string& what) {
  return absl::DataLossError(absl::StrCat("poller: DownloadProofs answer ", what));
}

}  // namespace

ProofFetcher::ProofFetcher(Clients& clients, const GlobalOptions& g, size_t window,
                           size_t max_held_bytes)
    : clients_(clients),
      g_(g),
      window_(std::max<size_t>(1, window)),
      max_held_bytes_(std::max<size_t>(1, max_held_bytes)) {
  worker_ = std::thread([this] { Work(); });
}

ProofFetcher::~ProofFetcher() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    if (active_ != nullptr) active_->TryCancel();
  }
  worker_.join();
}

size_t ProofFetcher::Push(const std::vector<ProofRef>& refs, size_t from) {
  absl::MutexLock lock(&mu_);
  size_t queued = 0;
  for (size_t i = from; i < refs.size() && slots_.size() < window_; ++i, ++queued) {
    Slot& s = slots_.emplace_back();
    s.digest = refs[i].digest;
    s.provider = refs[i].provider;
  }
  unstarted_ += queued;
  return queued;
}

absl::StatusOr<std::string> ProofFetcher::Take() {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return slots_.empty() || slots_.front().answer.has_value();
  };
  mu_.Await(absl::Condition(&ready));
  if (slots_.empty()) return absl::FailedPreconditionError("ProofFetcher::Take: nothing queued");
  absl::StatusOr<std::string> answer = *std::move(slots_.front().answer);
  slots_.pop_front();
  if (answer.ok()) held_bytes_ -= std::min(held_bytes_, answer->size());
  return answer;
}

size_t ProofFetcher::outstanding() {
  absl::MutexLock lock(&mu_);
  return slots_.size();
}

int ProofFetcher::calls() {
  absl::MutexLock lock(&mu_);
  return calls_;
}

void ProofFetcher::Answer(Slot* slot, absl::StatusOr<std::string> answer) {
  absl::MutexLock lock(&mu_);
  if (answer.ok()) held_bytes_ += answer->size();
  slot->answer = std::move(answer);
}

bool ProofFetcher::AwaitRoom() {
  absl::MutexLock lock(&mu_);
  auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stop_ || held_bytes_ < max_held_bytes_;
  };
  mu_.Await(absl::Condition(&room));
  return !stop_;
}

void ProofFetcher::Work() {
  while (true) {
    std::vector<Slot*> group;
    bool one_at_a_time;
    {
      absl::MutexLock lock(&mu_);
      // A count, not a scan: the condition is evaluated again at every Push and Take.
      auto have_work = [this]()
                           ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || unstarted_ > 0; };
      mu_.Await(absl::Condition(&have_work));
      if (stop_) return;
      // Slots are given to calls in order, so those not yet given are the last unstarted_.
      for (auto it = slots_.end() - static_cast<std::ptrdiff_t>(unstarted_); it != slots_.end();
           ++it) {
        group.push_back(&*it);
        if (group.size() == kMaxPerCall) break;
      }
      unstarted_ -= group.size();
      one_at_a_time = one_at_a_time_;
    }
    if (!one_at_a_time && FetchMany(group)) continue;
    {
      absl::MutexLock lock(&mu_);
      one_at_a_time_ = true;
    }
    for (Slot* s : group) {
      if (!AwaitRoom()) return;
      {
        absl::MutexLock lock(&mu_);
        ++calls_;
      }
      Answer(s, FetchOts(clients_, g_, s->digest, s->provider));
    }
  }
}

bool ProofFetcher::FetchMany(const std::vector<Slot*>& group) {
  v1::DownloadProofsRequest req;
  for (const Slot* s : group) {
    v1::DownloadProofRequest* p = req.add_proofs();
    p->set_digest(s->digest);
    p->set_provider(s->provider);
  }
  grpc::ClientContext ctx;
  ScopedCancel cancel(&ctx);
  ctx.set_deadline(
      absl::ToChronoTime(absl::Now() + std::max(UnaryDeadline(g_), absl::Seconds(120))));
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return true;
    active_ = &ctx;
    ++calls_;
  }
  auto reader = clients_.poller().DownloadProofs(&ctx, req);
  size_t next = 0;     // the first proof of the group not answered
  std::string file;    // the proof being read (group[next])
  int64_t total = -1;  // its size, from its first chunk
  bool received = false;
  absl::Status broken;
  v1::DownloadProofsResponse m;
  while (broken.ok() && AwaitRoom() && reader->Read(&m)) {
    received = true;
    if (m.index() < 0 || static_cast<size_t>(m.index()) != next) {
      broken = Broken(absl::StrCat("for proofs[", m.index(), "] where proofs[", next, "] was due"));
      break;
    }
    if (m.status().code() != 0) {
      if (total >= 0) {
        broken = Broken(absl::StrCat("ends proofs[", next, "] with a status after its data"));
        break;
      }
      const auto code = static_cast<absl::StatusCode>(m.status().code());
      // As FetchOts: no proof file yet is NOT_FOUND, anything else names the poller.
      Answer(group[next],
             code == absl::StatusCode::kFailedPrecondition
                 ? absl::NotFoundError("no .ots yet")
                 : absl::Status(code, absl::StrCat(clients_.Describe("poller"),
                                                   ": DownloadProofs: ", m.status().message())));
      ++next;
      continue;
    }
    if (total < 0) {
      total = m.total_size_bytes();
      if (total <= 0 || static_cast<uint64_t>(total) > ots::kMaxProofFileBytes) {
        broken = Broken(absl::StrCat("gives proofs[", next, "] a size of ", total, " bytes"));
        break;
      }
      file.reserve(static_cast<size_t>(total));
    }
    if (m.total_size_bytes() != total ||
        file.size() + m.data().size() > static_cast<uint64_t>(total)) {
      broken = Broken(absl::StrCat("for proofs[", next, "] does not add up to its size"));
      break;
    }
    file += m.data();
    if (file.size() == static_cast<size_t>(total)) {
      Answer(group[next], std::move(file));
      file.clear();
      total = -1;
      ++next;
    }
  }
  if (!broken.ok()) ctx.TryCancel();
  grpc::Status st = reader->Finish();
  {
    absl::MutexLock lock(&mu_);
    active_ = nullptr;
  }
  if (st.error_code() == grpc::StatusCode::UNIMPLEMENTED && !received) {
    return false;  // an older poller: each proof is asked for by itself
  }
  absl::Status rest = broken;
  if (rest.ok() && !st.ok()) rest = clients_.RpcError("poller", "DownloadProofs", st);
  if (rest.ok() && next < group.size()) rest = Broken("ends before its last proof");
  for (; next < group.size(); ++next) Answer(group[next], rest);
  return true;
}

}  // namespace anchord::anchorctl
