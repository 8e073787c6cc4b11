// The poll engine with the real proofd adapter against the in-process proofd sandbox, over
// loopback HTTP: list walk, lookup, confirmation and a real .ots accepted by our check.
#include <gtest/gtest.h>

#include "libs/common/clock.h"
#include "libs/common/hex.h"
#include "libs/providers/factory.h"
#include "services/poller/ots_check.h"
#include "services/poller/poll_engine.h"
#include "services/sandbox/sandbox.h"
#include "tests/poller/test_util.h"

namespace anchord::poller {
namespace {

using testing::Digest;
using testing::TempDir;
namespace v1 = anchord::v1;

TEST(PollerSandboxTest, ConfirmsAndStoresRealOts) {
  FakeClock clock;
  sandbox::SandboxOptions so;
  so.api_keys = {"proofd_live_pollertest"};
  so.confirm_after = absl::Seconds(30);
  so.clock = &clock;
  so.threads = 32;
  auto sb = sandbox::Sandbox::Start(so);
  ASSERT_TRUE(sb.ok()) << sb.status();

  providers::ProviderSettings ps;
  ps.proofd_url = "http://127.0.0.1:" + std::to_string((*sb)->port());
  ps.proofd_api_key = "proofd_live_pollertest";
  auto set = providers::ProviderSet::Create(ps, nullptr, {}, &clock);
  ASSERT_TRUE(set.ok()) << set.status();
  providers::Provider* p = (*set)->Default();
  ASSERT_NE(p, nullptr);

  TempDir dir;
  auto store = OpenSqlitePollerStore(dir.File("poller.db"));
  ASSERT_TRUE(store.ok());
  // Three proofs created for real at the sandbox and handed to the poller.
  std::vector<std::string> ids;
  for (int n = 1; n <= 3; ++n) {
    auto prepared = p->PrepareCreate({Digest(n), "f.pdf", 10, "application/pdf"});
    ASSERT_TRUE(prepared.ok()) << prepared.status();
    providers::CreateResult created = p->Create(*prepared);
    ASSERT_TRUE(created.outcome.ok()) << created.outcome.code << " " << created.outcome.message;
    ASSERT_TRUE(created.record.has_value());
    ids.push_back(created.record->proof_id);
    TrackInput in = testing::Pending(Digest(n), created.record->proof_id, p->name());
    ASSERT_TRUE((*store)->Track({in}, clock.Now()).ok());
  }

  EventBus bus;
  auto sub = bus.Subscribe({}, 100, nullptr);
  PollEngine engine(store->get(), &bus, nullptr, &clock, {p}, {});
  clock.Advance(absl::Seconds(1));
  RoundStats s1 = engine.RunRound(p);
  EXPECT_EQ(s1.confirmed, 0);
  if (p->SupportsListPending()) {
    EXPECT_TRUE(s1.walked);
    EXPECT_EQ(s1.lookups, 0);  // all three are still on the pending list
  }

  clock.Advance(absl::Seconds(60));
  RoundStats s2 = engine.RunRound(p);
  EXPECT_EQ(s2.confirmed, 3);
  EXPECT_EQ(s2.ots_stored, 3);
  for (int n = 1; n <= 3; ++n) {
    auto row = (*store)->Get(Digest(n), p->name());
    ASSERT_TRUE(row.ok() && row->has_value());
    EXPECT_EQ((*row)->state, v1::DIGEST_STATE_CONFIRMED);
    EXPECT_GT((*row)->block_height, 0);
    auto ots = (*store)->GetOts(Digest(n), p->name());
    ASSERT_TRUE(ots.ok() && ots->has_value());
    EXPECT_TRUE(CheckOtsFile(**ots, Digest(n)).ok());
  }
  int confirmed = 0, stored = 0;
  for (int i = 0; i < 100; ++i) {
    EventPtr ev = sub->Pop();
    if (!ev) break;
    confirmed += ev->type() == v1::PROOF_EVENT_TYPE_CONFIRMED;
    stored += ev->type() == v1::PROOF_EVENT_TYPE_OTS_STORED;
  }
  EXPECT_EQ(confirmed, 3);
  EXPECT_EQ(stored, 3);
  (*set)->Stop();
  (*sb)->Stop();
}

}  // namespace
}  // namespace anchord::poller
