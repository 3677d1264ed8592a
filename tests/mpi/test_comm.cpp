#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "comm/comm.hpp"

using flowlm::comm::Communicator;

TEST(Comm, AllreduceSumFloatAcrossBuckets) {
  const auto world = Communicator::world();
  const flowlm::index_t n = Communicator::kBucketElems + 1000;  // forces two buckets
  std::vector<float> buf(static_cast<std::size_t>(n));
  for (flowlm::index_t i = 0; i < n; ++i) buf[i] = static_cast<float>((i % 7) + world.rank());
  world.allreduce_sum(buf.data(), n);
  const int p = world.size();
  for (flowlm::index_t i = 0; i < n; i += 9973) {
    const float expect = static_cast<float>(p * (i % 7) + p * (p - 1) / 2);
    ASSERT_EQ(buf[i], expect) << "at " << i;
  }
  EXPECT_EQ(buf[n - 1], static_cast<float>(p * ((n - 1) % 7) + p * (p - 1) / 2));
}

TEST(Comm, ScalarReductionsAndMax) {
  const auto world = Communicator::world();
  const int p = world.size();
  EXPECT_DOUBLE_EQ(world.sum(static_cast<double>(world.rank() + 1)), p * (p + 1) / 2.0);
  EXPECT_EQ(world.sum(std::int64_t{world.rank()}), std::int64_t{p} * (p - 1) / 2);
  EXPECT_DOUBLE_EQ(world.max(static_cast<double>(world.rank())), p - 1);
  EXPECT_DOUBLE_EQ(world.min(static_cast<double>(world.rank())), 0);
  std::vector<double> d = {1.0 * world.rank(), -1.0 * world.rank()};
  world.allreduce_max(d.data(), 2);
  EXPECT_EQ(d[0], p - 1);
  EXPECT_EQ(d[1], 0);
  EXPECT_EQ(world.any(world.rank() == p - 1), true);
  EXPECT_EQ(world.any(false), false);
}

TEST(Comm, BroadcastAndGather) {
  const auto world = Communicator::world();
  std::string s = world.is_root() ? "hello from root" : "";
  world.broadcast(s);
  EXPECT_EQ(s, "hello from root");
  std::vector<int> v;
  if (world.is_root()) v = {1, 2, 3};
  world.broadcast(v);
  EXPECT_EQ(v, (std::vector<int>{1, 2, 3}));

  const auto g = world.gather(static_cast<double>(world.rank() * 10));
  if (world.is_root()) {
    ASSERT_EQ(g.size(), static_cast<std::size_t>(world.size()));
    for (int r = 0; r < world.size(); ++r) EXPECT_EQ(g[r], r * 10);
  } else {
    EXPECT_TRUE(g.empty());
  }
  const auto all = world.allgather(std::int64_t{world.rank()});
  for (int r = 0; r < world.size(); ++r) EXPECT_EQ(all[r], r);
}

TEST(Comm, AllgathervConcatenatesInRankOrder) {
  const auto world = Communicator::world();
  std::vector<double> local(static_cast<std::size_t>(world.rank() + 1), static_cast<double>(world.rank()));
  const auto all = world.allgatherv(local);
  const int p = world.size();
  ASSERT_EQ(all.size(), static_cast<std::size_t>(p * (p + 1) / 2));
  std::size_t k = 0;
  for (int r = 0; r < p; ++r)
    for (int j = 0; j <= r; ++j) EXPECT_EQ(all[k++], r);
}
