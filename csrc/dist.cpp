// PyTorch's distributed engine (c10d), as torch.distributed and DistributedDataParallel use it:
// a TCPStore for the rendezvous (rank 0 serves it), a ProcessGroup whose CPU backend is gloo
// (and whose CUDA backend is NCCL when csrc/nccl.cpp is handed in),
// the collectives the trainer needs (broadcast, all-reduce, barrier, store keys), and DDP's own
// Reducer, which all-reduces gradients in buckets from autograd hooks while backward still runs.
// Plain C entry points; exceptions become -1 with the message kept (bertkit.h).
#include "bertkit.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
};

std::vector<at::Tensor> tensors(at::Tensor* const* handles, int n) {
  std::vector<at::Tensor> out;
  for (int i = 0; i < n; i++) out.push_back(*handles[i]);
  return out;
}

// gloo's network device as torch.distributed picks it: GLOO_SOCKET_IFNAME, else the address
// this host's name resolves to.
std::shared_ptr<::gloo::transport::Device> gloo_device() {
  const char* interface = std::getenv("GLOO_SOCKET_IFNAME");
  if (interface != nullptr && *interface != '\0') {
    return c10d::ProcessGroupGloo::createDeviceForInterface(interface);
  }
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace

extern "C" {

// What csrc/nccl.cpp exports, passed in when the NCCL backend is wanted (null for gloo alone).
typedef int (*nccl_backend_fn)(void* store, int rank, int world, long timeout_ms, void** out, char* error,
                               long cap);

// Joins the group: rank 0 serves the store at host:port and waits for the others; every rank
// then builds a gloo backend through it, for CPU tensors, and with `nccl` a NCCL backend for
// CUDA tensors (torch.distributed's "cpu:gloo,cuda:nccl"). `timeout_ms` bounds the rendezvous
// and every collective.
int bertkit_dist_init(const char* host, int port, int rank, int world, long timeout_ms, nccl_backend_fn nccl,
                      void** out) {
  return bertkit_guard([&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(port);
    so.isServer = rank == 0;
    so.numWorkers = static_cast<std::size_t>(world);
    so.waitWorkers = true;
    so.timeout = timeout;
    auto store = c10::make_intrusive<c10d::TCPStore>(host, so);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(gloo_device());
    c10::intrusive_ptr<c10d::Store> prefixed = c10::make_intrusive<c10d::PrefixStore>("default_pg/0/", store);
    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank, world, options);
    auto pg = c10::make_intrusive<c10d::ProcessGroup>(prefixed, rank, world);
    pg->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
    pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
    if (nccl == nullptr) {
      pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::GLOO, gloo);
    } else {
      void* made = nullptr;
      char error[1024];
      if (nccl(&prefixed, rank, world, timeout_ms, &made, error, sizeof error) != 0) {
        throw std::runtime_error(error);
      }
      auto* backend = static_cast<c10::intrusive_ptr<c10d::Backend>*>(made);
      pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, *backend);
      delete backend;
    }
    *out = new Group{store, pg};
    return 0;
  });
}

void bertkit_dist_free(void* group) { delete static_cast<Group*>(group); }

// Sends rank `root`'s tensors to every rank, in place.
int bertkit_dist_broadcast(void* group, at::Tensor* const* handles, int n, int root) {
  return bertkit_guard([&] {
    auto* g = static_cast<Group*>(group);
    at::NoGradGuard no_grad;  // parameters are overwritten, not a step of the graph
    for (int i = 0; i < n; i++) {
      std::vector<at::Tensor> one{*handles[i]};
      c10d::BroadcastOptions o;
      o.rootRank = root;
      g->pg->broadcast(one, o)->wait();
    }
    return 0;
  });
}

// Sums a tensor over the ranks (op 0) or takes its maximum (op 1), in place.
int bertkit_dist_all_reduce(void* group, at::Tensor* handle, int op) {
  return bertkit_guard([&] {
    std::vector<at::Tensor> one{*handle};
    c10d::AllreduceOptions o;
    o.reduceOp = op == 1 ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM;
    static_cast<Group*>(group)->pg->allreduce(one, o)->wait();
    return 0;
  });
}

int bertkit_dist_barrier(void* group) {
  return bertkit_guard([&] {
    static_cast<Group*>(group)->pg->barrier()->wait();
    return 0;
  });
}

int bertkit_dist_store_set(void* group, const char* key, const char* value, long len) {
  return bertkit_guard([&] {
    std::vector<uint8_t> bytes(value, value + len);
    static_cast<Group*>(group)->store->set(key, bytes);
    return 0;
  });
}

// Waits for `key` (up to the store's timeout); copies at most `cap` bytes; returns the length.
int bertkit_dist_store_get(void* group, const char* key, char* buf, long cap) {
  return bertkit_guard([&] {
    auto bytes = static_cast<Group*>(group)->store->get(key);
    std::memcpy(buf, bytes.data(), std::min<size_t>(bytes.size(), static_cast<size_t>(cap)));
    return static_cast<int>(bytes.size());
  });
}

// DDP's Reducer over `params`, bucketed as DistributedDataParallel does: a first bucket of 1 MiB,
// then `bucket_bytes` each, assigned in parameter order and reversed (backward produces the
// last parameters' gradients first).
int bertkit_reducer_new(void* group, at::Tensor* const* params, int n, long bucket_bytes, int find_unused,
                        void** out) {
  return bertkit_guard([&] {
    auto ps = tensors(params, n);
    const size_t first = 1024 * 1024;
    std::vector<bool> sparse(n, false);
    auto [buckets, limits] =
        c10d::compute_bucket_assignment_by_size(ps, {first, static_cast<size_t>(bucket_bytes)}, sparse);
    std::reverse(buckets.begin(), buckets.end());
    std::vector<int64_t> caps(limits.rbegin(), limits.rend());
    *out = new c10d::Reducer(ps, buckets, static_cast<Group*>(group)->pg, sparse, bucket_bytes, find_unused != 0,
                             /*gradient_as_bucket_view=*/false, {}, static_cast<int64_t>(first),
                             /*skip_all_reduce_unused_params=*/false, /*use_python_reducer=*/false, caps);
    return 0;
  });
}

// Before a backward whose gradients are to be averaged (the last micro-batch of a step):
// `outputs` are what backward starts from, searched for unused parameters if asked.
int bertkit_reducer_prepare(void* reducer, at::Tensor* const* outputs, int n) {
  return bertkit_guard([&] {
    static_cast<c10d::Reducer*>(reducer)->prepare_for_backward(tensors(outputs, n));
    return 0;
  });
}

void bertkit_reducer_free(void* reducer) { delete static_cast<c10d::Reducer*>(reducer); }

}  // extern "C"
