#include "comm/comm.hpp"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <numeric>

#include "comm/watchdog.hpp"
#include "core/error.hpp"

namespace flowlm::comm {
namespace {

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  fail<Error>("MPI error in {}: {}", what, std::string(msg, static_cast<std::size_t>(len)));
}

template <class T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() {
  return MPI_FLOAT;
}
template <>
MPI_Datatype mpi_type<double>() {
  return MPI_DOUBLE;
}
template <>
MPI_Datatype mpi_type<std::int64_t>() {
  return MPI_INT64_T;
}

template <class T>
void allreduce_buckets(MPI_Comm comm, T* buf, index_t n, MPI_Op op) {
  const WaitScope wait("MPI_Allreduce");
  for (index_t off = 0; off < n; off += Communicator::kBucketElems) {
    const int count = static_cast<int>(std::min(Communicator::kBucketElems, n - off));
    check(MPI_Allreduce(MPI_IN_PLACE, buf + off, count, mpi_type<T>(), op, comm), "MPI_Allreduce");
  }
}

template <class T>
std::vector<T> allgatherv_impl(MPI_Comm comm, int size, const std::vector<T>& local) {
  const WaitScope wait("MPI_Allgatherv");
  const std::int64_t mine = static_cast<std::int64_t>(local.size());
  std::vector<std::int64_t> counts64(static_cast<std::size_t>(size));
  check(MPI_Allgather(&mine, 1, MPI_INT64_T, counts64.data(), 1, MPI_INT64_T, comm), "MPI_Allgather");
  std::vector<int> counts(counts64.begin(), counts64.end()), displs(counts.size(), 0);
  const std::int64_t total = std::accumulate(counts64.begin(), counts64.end(), std::int64_t{0});
  if (total > std::numeric_limits<int>::max())
    fail<Error>("allgatherv: {} elements exceed MPI's int count", total);
  std::partial_sum(counts.begin(), counts.end() - 1, displs.begin() + 1);
  std::vector<T> out(static_cast<std::size_t>(total));
  check(MPI_Allgatherv(local.data(), static_cast<int>(mine), mpi_type<T>(), out.data(), counts.data(),
                       displs.data(), mpi_type<T>(), comm),
        "MPI_Allgatherv");
  return out;
}

}  // namespace

Environment::Environment(int& argc, char**& argv) {
  int started = 0;
  MPI_Initialized(&started);
  if (started) return;
  int provided = 0;
  check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  owns_ = true;
  // Errors come back as codes that check() turns into exceptions, not aborts.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

Environment::~Environment() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_ && !finalized) MPI_Finalize();
}

std::string mpi_library_version() {
  char buf[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(buf, &len);
  std::string s(buf, static_cast<std::size_t>(len));
  const auto cut = s.find_first_of(",\n");
  return cut == std::string::npos ? s : s.substr(0, cut);
}

Communicator::Communicator(MPI_Comm comm) : comm_(comm) {
  check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
}

void Communicator::barrier() const {
  const WaitScope wait("MPI_Barrier");
  check(MPI_Barrier(comm_), "MPI_Barrier");
}

void Communicator::abort(int code) const {
  MPI_Abort(comm_, code);
  std::abort();  // MPI_Abort does not return; this keeps the [[noreturn]] promise
}

void Communicator::allreduce_sum(float* buf, index_t n) const { allreduce_buckets(comm_, buf, n, MPI_SUM); }
void Communicator::allreduce_sum(double* buf, index_t n) const { allreduce_buckets(comm_, buf, n, MPI_SUM); }
void Communicator::allreduce_sum(std::int64_t* buf, index_t n) const {
  allreduce_buckets(comm_, buf, n, MPI_SUM);
}
void Communicator::reduce_sum(float* buf, index_t n, int root) const {
  if (size_ == 1) return;
  const WaitScope wait("MPI_Reduce");
  for (index_t off = 0; off < n; off += kBucketElems) {
    const int count = static_cast<int>(std::min(kBucketElems, n - off));
    // The root reduces in place; the others' send buffers stay as they were.
    check(MPI_Reduce(rank_ == root ? MPI_IN_PLACE : buf + off, buf + off, count, MPI_FLOAT, MPI_SUM, root,
                     comm_),
          "MPI_Reduce");
  }
}

void Communicator::allreduce_max(float* buf, index_t n) const { allreduce_buckets(comm_, buf, n, MPI_MAX); }
void Communicator::allreduce_max(double* buf, index_t n) const { allreduce_buckets(comm_, buf, n, MPI_MAX); }
void Communicator::allreduce_min(double* buf, index_t n) const { allreduce_buckets(comm_, buf, n, MPI_MIN); }

double Communicator::sum(double v) const {
  allreduce_sum(&v, 1);
  return v;
}
std::int64_t Communicator::sum(std::int64_t v) const {
  allreduce_sum(&v, 1);
  return v;
}
double Communicator::max(double v) const {
  allreduce_max(&v, 1);
  return v;
}
double Communicator::min(double v) const {
  allreduce_min(&v, 1);
  return v;
}
bool Communicator::any(bool v) const {
  const WaitScope wait("MPI_Allreduce");
  int x = v ? 1 : 0;
  check(MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_INT, MPI_LOR, comm_), "MPI_Allreduce");
  return x != 0;
}

void Communicator::broadcast_bytes(void* buf, std::size_t bytes, int root) const {
  const WaitScope wait("MPI_Bcast");
  auto* p = static_cast<char*>(buf);
  constexpr std::size_t kChunk = std::size_t{1} << 30;
  for (std::size_t off = 0; off < bytes; off += kChunk) {
    const int count = static_cast<int>(std::min(kChunk, bytes - off));
    check(MPI_Bcast(p + off, count, MPI_BYTE, root, comm_), "MPI_Bcast");
  }
}

void Communicator::broadcast(std::string& s, int root) const {
  std::vector<char> v(s.begin(), s.end());
  broadcast(v, root);
  s.assign(v.begin(), v.end());
}

std::vector<double> Communicator::gather(double v, int root) const {
  const WaitScope wait("MPI_Gather");
  std::vector<double> out(rank_ == root ? static_cast<std::size_t>(size_) : 0);
  check(MPI_Gather(&v, 1, MPI_DOUBLE, out.data(), 1, MPI_DOUBLE, root, comm_), "MPI_Gather");
  return out;
}

std::vector<double> Communicator::allgather(double v) const {
  const WaitScope wait("MPI_Allgather");
  std::vector<double> out(static_cast<std::size_t>(size_));
  check(MPI_Allgather(&v, 1, MPI_DOUBLE, out.data(), 1, MPI_DOUBLE, comm_), "MPI_Allgather");
  return out;
}

std::vector<std::int64_t> Communicator::allgather(std::int64_t v) const {
  const WaitScope wait("MPI_Allgather");
  std::vector<std::int64_t> out(static_cast<std::size_t>(size_));
  check(MPI_Allgather(&v, 1, MPI_INT64_T, out.data(), 1, MPI_INT64_T, comm_), "MPI_Allgather");
  return out;
}

std::vector<double> Communicator::allgatherv(const std::vector<double>& local) const {
  return allgatherv_impl(comm_, size_, local);
}
std::vector<float> Communicator::allgatherv(const std::vector<float>& local) const {
  return allgatherv_impl(comm_, size_, local);
}

SplitCommunicator::SplitCommunicator(const Communicator& parent, int color) {
  check(MPI_Comm_split(parent.native(), color < 0 ? MPI_UNDEFINED : color, parent.rank(), &comm_),
        "MPI_Comm_split");
}

SplitCommunicator::~SplitCommunicator() {
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

Communicator SplitCommunicator::comm() const {
  if (comm_ == MPI_COMM_NULL) fail<Error>("SplitCommunicator::comm: this rank is not a member");
  return Communicator(comm_);
}

}  // namespace flowlm::comm
