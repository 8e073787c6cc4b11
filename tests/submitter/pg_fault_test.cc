// Fault behaviour on PostgreSQL: the database restarts under a running engine. The service
// reports NOT_SERVING while it is down and SERVING once it is back, keeps everything it stored,
// and goes on: every digest is sent, none twice.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <set>
#include <atomic>
#include <functional>
#include <thread>

#include "grpc/health/v1/health.grpc.pb.h"
#include "libs/ledger/pg_health.h"
#include "libs/rpc/server.h"
#include "services/submitter/engine.h"
#include "services/submitter/pg_submitter_store.h"
#include "tests/submitter/test_util.h"
#include "tests/support/pg_server.h"
#include "tests/testing/wait.h"

namespace anchord::submitter {
namespace {

using testing::FakeProvider;
using testing::Item;

bool Serving(const std::shared_ptr<grpc::Channel>& ch) {
  auto stub = grpc::health::v1::Health::NewStub(ch);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service("anchord.v1.SubmitterService");
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status st = stub->Check(&ctx, req, &resp);
  return st.ok() && resp.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

// Polls `cond` every 100 ms (each poll may be a gRPC call or a query) for at most `limit`.
bool WaitFor(const std::function<bool()>& cond, absl::Duration limit) {
  return ::anchord::testing::WaitUntil(cond, limit, absl::Milliseconds(100));
}

TEST(PgFaultTest, DatabaseRestartUnderARunningEngine) {
  // A private server: this test stops it.
  auto server = ::anchord::testing::PgServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  ledger::PgOptions pg;
  pg.retry_for = absl::Seconds(60);
  auto db_or = ledger::PgDb::Open((*server)->Url(), pg);
  ASSERT_TRUE(db_or.ok()) << db_or.status();
  std::shared_ptr<ledger::PgDb> db(std::move(*db_or));
  auto store = OpenPgSubmitterStore(db);
  ASSERT_TRUE(store.ok()) << store.status();

  FakeProvider provider;
  EngineOptions eo;
  eo.workers = 2;
  eo.idle_poll = absl::Milliseconds(100);
  eo.batch_linger = absl::ZeroDuration();
  Engine engine(store->get(), {&provider}, nullptr, Clock::Real(), eo);
  ASSERT_TRUE(engine.Start().ok());

  rpc::ServerOptions so;
  so.service_name = "submitter";
  so.health_service_names = {"anchord.v1.SubmitterService"};
  auto runner = rpc::ServerRunner::Start(so, {}, std::make_shared<prometheus::Registry>());
  ASSERT_TRUE(runner.ok()) << runner.status();
  rpc::ServerRunner* runner_ptr = runner->get();
  std::vector<bool> transitions;
  std::mutex mu;
  ledger::PgHealthWatch watch(
      db,
      [&](bool serving) {
        runner_ptr->SetServing(serving);
        std::lock_guard<std::mutex> lock(mu);
        transitions.push_back(serving);
      },
      absl::Milliseconds(200));
  auto ch = grpc::CreateChannel("127.0.0.1:" + std::to_string((*runner)->port()),
                                grpc::InsecureChannelCredentials());

  std::vector<NewItem> first, second;
  for (int i = 0; i < 20; ++i)
    first.push_back(Item(static_cast<char>(1 + i), "a" + std::to_string(i)));
  for (int i = 0; i < 20; ++i)
    second.push_back(Item(static_cast<char>(40 + i), "b" + std::to_string(i)));
  ASSERT_TRUE((*store)->InsertBatch(first, absl::Now()).ok());
  engine.Wake();
  ASSERT_TRUE(WaitFor([&] { return Serving(ch); }, absl::Seconds(10)));
  ASSERT_TRUE(WaitFor([&] { return provider.sent().size() >= 20; }, absl::Seconds(30)));

  ASSERT_TRUE((*server)->Stop().ok());
  EXPECT_TRUE(WaitFor([&] { return !Serving(ch); }, absl::Seconds(10)))
      << "health stayed SERVING with the database down";
  // Intake while the database is down waits for it (nothing is acknowledged before it is
  // stored); the server comes back once the intake call is under way.
  std::atomic<bool> calling{false}, returned{false}, returned_while_down{true};
  std::thread restarter([&] {
    EXPECT_TRUE(WaitFor([&] { return calling.load(); }, absl::Seconds(10)));
    returned_while_down = returned.load();
    EXPECT_TRUE((*server)->StartAgain().ok());
  });
  calling = true;
  absl::Status stored = (*store)->InsertBatch(second, absl::Now()).status();
  returned = true;
  restarter.join();
  EXPECT_FALSE(returned_while_down) << "intake returned while the database was down: " << stored;
  ASSERT_TRUE(stored.ok()) << stored;
  engine.Wake();
  EXPECT_TRUE(WaitFor([&] { return Serving(ch); }, absl::Seconds(15)))
      << "health did not return to SERVING";
  ASSERT_TRUE(WaitFor(
      [&] {
        auto backlog = (*store)->CountBacklog();
        return backlog.ok() && *backlog == 0 && provider.sent().size() >= 40;
      },
      absl::Seconds(60)));
  engine.Stop();

  // Every digest sent exactly once; every row SUBMITTED.
  std::multiset<std::string> digests;
  for (const auto& r : provider.sent()) digests.insert(r.digest.hex());
  std::set<std::string> distinct(digests.begin(), digests.end());
  EXPECT_EQ(digests.size(), 40u);
  EXPECT_EQ(distinct.size(), 40u);
  for (const auto& item : first) {
    auto rows = (*store)->GetByDigest(item.digest);
    ASSERT_TRUE(rows.ok() && rows->size() == 1);
    EXPECT_EQ((*rows)[0].state, SubState::kSubmitted);
  }
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_GE(transitions.size(), 3u);
  EXPECT_TRUE(transitions[0]);
  EXPECT_FALSE(transitions[1]);
  EXPECT_TRUE(transitions.back());
}

// A quota pause one replica stored holds the other replica's queue too, and a resume on one
// replica resumes the other.
TEST(PgReplicaEngineTest, QuotaPauseAndResumeReachOtherReplicas) {
  ::anchord::testing::PgServer* server = ::anchord::testing::PgServer::Shared();
  ASSERT_NE(server, nullptr) << "PostgreSQL must be installed (Debian package postgresql)";
  auto url = server->CreateDatabase();
  ASSERT_TRUE(url.ok()) << url.status();
  FakeClock clock(absl::FromUnixSeconds(1'700'000'000));
  PgSubmitterOptions so;
  so.lease_term = absl::ZeroDuration();
  std::unique_ptr<SubmitterStore> stores[2];
  for (auto& s : stores) {
    auto db = ledger::PgDb::Open(*url);
    ASSERT_TRUE(db.ok()) << db.status();
    auto st = OpenPgSubmitterStore(std::shared_ptr<ledger::PgDb>(std::move(*db)), so);
    ASSERT_TRUE(st.ok()) << st.status();
    s = std::move(*st);
  }
  FakeProvider pa, pb;
  EngineOptions eo;
  eo.quota_retry = absl::Hours(1);
  Engine a(stores[0].get(), {&pa}, nullptr, &clock, eo);
  Engine b(stores[1].get(), {&pb}, nullptr, &clock, eo);
  ASSERT_TRUE(a.Init().ok());
  ASSERT_TRUE(b.Init().ok());
  ASSERT_TRUE(stores[0]->InsertBatch({Item('a', "a"), Item('b', "b")}, clock.Now()).ok());
  pa.Script(FakeProvider::Fail(providers::OutcomeKind::kQuotaExhausted, "MONTHLY_LIMIT_REACHED",
                               "q1", 402));
  auto ran = a.RunOnce();
  ASSERT_TRUE(ran.ok() && *ran) << ran.status();
  ASSERT_TRUE(a.Paused("fake").has_value());
  EXPECT_FALSE(b.Paused("fake").has_value());
  b.RefreshPauses();
  ASSERT_TRUE(b.Paused("fake").has_value());
  // b sends nothing while paused (the probe is an hour away).
  auto idle = b.RunOnce();
  ASSERT_TRUE(idle.ok());
  EXPECT_FALSE(*idle);
  EXPECT_TRUE(pb.sent().empty());
  // ResumeQueue on a resumes b as well.
  clock.Advance(absl::Minutes(1));
  ASSERT_TRUE(a.Resume("fake").ok());
  b.RefreshPauses();
  EXPECT_FALSE(b.Paused("fake").has_value());
  auto sent = b.RunOnce();
  ASSERT_TRUE(sent.ok() && *sent) << sent.status();
  EXPECT_EQ(pb.sent().size(), 1u);
}

}  // namespace
}  // namespace anchord::submitter
