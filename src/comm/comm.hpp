// The MPI layer: an RAII environment and a communicator with the collectives flowlm uses.
// Only src/comm calls MPI; other modules see these types (io/ takes the native handle to
// open files with parallel HDF5).
#pragma once

#include <mpi.h>

#include <cstdint>
#include <exception>
#include <string>
#include <type_traits>
#include <vector>

#include "comm/watchdog.hpp"
#include "core/error.hpp"
#include "core/types.hpp"

namespace flowlm::comm {

/// \brief RAII MPI start-up: MPI_Init_thread (funneled) on construction, MPI_Finalize on
/// destruction. Safe when MPI was already started by someone else (then finalizes nothing).
/// Without a launcher (plain `./flowlm`), Open MPI runs as a singleton of one rank.
class Environment {
 public:
  Environment(int& argc, char**& argv);
  ~Environment();
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

 private:
  bool owns_ = false;
};

/// \brief "Open MPI v4.1.4, ..." (first line of MPI_Get_library_version).
std::string mpi_library_version();

/// \brief A non-owning view of an MPI communicator with typed, bucketed collectives.
/// All collectives must be called by every rank of the communicator in the same order.
class Communicator {
 public:
  /// Largest number of elements one MPI call reduces; longer buffers go in buckets.
  static constexpr index_t kBucketElems = index_t{1} << 22;

  explicit Communicator(MPI_Comm comm = MPI_COMM_WORLD);
  static Communicator world() { return Communicator(MPI_COMM_WORLD); }
  /// \brief This process alone (a one-rank reference run inside a multi-rank test or job).
  static Communicator self() { return Communicator(MPI_COMM_SELF); }

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  MPI_Comm native() const { return comm_; }

  void barrier() const;
  /// Ends every rank of the job with `code` (used by main when one rank fails alone, so
  /// that the others do not wait forever in a collective).
  [[noreturn]] void abort(int code) const;

  /// In-place element-wise reductions over all ranks, in buckets of kBucketElems.
  void allreduce_sum(float* buf, index_t n) const;
  void allreduce_sum(double* buf, index_t n) const;
  void allreduce_sum(std::int64_t* buf, index_t n) const;
  void allreduce_max(float* buf, index_t n) const;
  /// In-place sum over all ranks of buf[0, n) that only `root` receives (the other ranks'
  /// buffers are left as they were), in buckets of kBucketElems.
  void reduce_sum(float* buf, index_t n, int root) const;
  void allreduce_max(double* buf, index_t n) const;
  void allreduce_min(double* buf, index_t n) const;

  /// Scalar reductions.
  double sum(double v) const;
  std::int64_t sum(std::int64_t v) const;
  double max(double v) const;
  double min(double v) const;
  /// True on every rank if `v` is true on any rank (use to agree on errors).
  bool any(bool v) const;

  /// Broadcast raw bytes / a vector (resized on receivers) / a string from `root`.
  void broadcast_bytes(void* buf, std::size_t bytes, int root = 0) const;
  template <class T>
  void broadcast(std::vector<T>& v, int root = 0) const {
    static_assert(std::is_trivially_copyable_v<T>);
    std::uint64_t n = v.size();
    broadcast_bytes(&n, sizeof n, root);
    v.resize(n);
    broadcast_bytes(v.data(), n * sizeof(T), root);
  }
  void broadcast(std::string& s, int root = 0) const;
  template <class T>
  void broadcast_value(T& v, int root = 0) const {
    static_assert(std::is_trivially_copyable_v<T>);
    broadcast_bytes(&v, sizeof v, root);
  }

  /// \brief Runs `f()` on rank 0 alone and hands its result (trivially copyable) to every rank.
  /// When `f` throws, rank 0 rethrows its exception and the other ranks throw flowlm::Error with
  /// its message, so no rank waits for work that never comes (e.g. files only rank 0 writes).
  template <class T, class F>
  T on_root(F&& f) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T result{};
    std::exception_ptr error;
    std::string message;
    if (is_root()) {
      try {
        result = f();
      } catch (const std::exception& e) {
        error = std::current_exception();
        message = e.what();
      }
    }
    bool failed = error != nullptr;
    {
      // Waiting for rank 0's work may take long (tokenizing a corpus): not a hang.
      const WaitScope idle("MPI_Bcast (waiting for rank 0)", /*suspend=*/true);
      broadcast_value(failed);
    }
    if (failed) {
      broadcast(message);
      if (error) std::rethrow_exception(error);
      throw Error("failed on rank 0: " + message);
    }
    broadcast_value(result);
    return result;
  }

  /// Gather one scalar from every rank; the result (size() entries, by rank) is filled on
  /// `root` only for gather, on every rank for allgather.
  std::vector<double> gather(double v, int root = 0) const;
  std::vector<double> allgather(double v) const;
  std::vector<std::int64_t> allgather(std::int64_t v) const;

  /// Concatenate every rank's vector in rank order, on every rank.
  std::vector<double> allgatherv(const std::vector<double>& local) const;
  std::vector<float> allgatherv(const std::vector<float>& local) const;

 private:
  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
};

/// \brief An owned communicator of the ranks of `parent` that pass the same `color`
/// (MPI_Comm_split, ordered by parent rank); a rank that passes a negative color belongs to none.
/// Collective over `parent`. Freed when the object dies.
class SplitCommunicator {
 public:
  SplitCommunicator(const Communicator& parent, int color);
  ~SplitCommunicator();
  SplitCommunicator(const SplitCommunicator&) = delete;
  SplitCommunicator& operator=(const SplitCommunicator&) = delete;
  /// \brief False on ranks that passed a negative color.
  bool member() const { return comm_ != MPI_COMM_NULL; }
  /// \brief The communicator (member ranks only; Error elsewhere).
  Communicator comm() const;

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
};

}  // namespace flowlm::comm
