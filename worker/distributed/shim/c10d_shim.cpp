// C ABI over libtorch's c10d: rendezvous stores, process groups (Gloo; NCCL when built with
// WD_WITH_NCCL) and the collectives the worker needs. Tensors are `at::Tensor*`, which is what
// tch's `*mut C_tensor` points to. No C++ exception leaves this file: every entry point
// catches everything and returns a status code with a heap-allocated message that the
// caller frees with wd_string_free.

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef WD_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace {

enum Status : int {
  WD_OK = 0,
  WD_TIMEOUT = 1,
  WD_FAILED = 2,
  WD_INVALID = 3,
};

enum Op : int {
  WD_SUM = 0,
  WD_AVG = 1,
  WD_MAX = 2,
  WD_MIN = 3,
};

char* copy_message(const std::string& text) {
  char* out = static_cast<char*>(std::malloc(text.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, text.c_str(), text.size() + 1);
  }
  return out;
}

bool mentions_timeout(const std::string& text) {
  for (const char* needle : {"timed out", "Timed out", "timeout", "Timeout"}) {
    if (text.find(needle) != std::string::npos) {
      return true;
    }
  }
  return false;
}

// Runs `body`, converting any exception into a status and a message.
template <typename F>
int guarded(char** error, F&& body) {
  *error = nullptr;
  try {
    return body();
  } catch (const c10::Error& e) {
    std::string text = e.what_without_backtrace();
    *error = copy_message(text);
    return mentions_timeout(text) ? WD_TIMEOUT : WD_FAILED;
  } catch (const std::exception& e) {
    std::string text = e.what();
    *error = copy_message(text);
    return mentions_timeout(text) ? WD_TIMEOUT : WD_FAILED;
  } catch (...) {
    *error = copy_message("unknown C++ exception");
    return WD_FAILED;
  }
}

int invalid(char** error, const std::string& text) {
  *error = copy_message(text);
  return WD_INVALID;
}

std::chrono::milliseconds millis(int64_t ms) {
  return std::chrono::milliseconds(ms);
}

// Waits for `work`; the timeout bounds how long this call can block.
void finish(const c10::intrusive_ptr<c10d::Work>& work, int64_t timeout_ms) {
  work->wait(millis(timeout_ms));
}

} // namespace

struct wd_store {
  c10::intrusive_ptr<c10d::Store> store;
};

struct wd_group {
  c10::intrusive_ptr<c10d::Backend> backend;
  int rank;
  int size;
  bool native_avg;
};

extern "C" {

void wd_string_free(char* text) {
  std::free(text);
}

int wd_tcp_store_new(
    const char* host,
    uint16_t port,
    bool is_server,
    int world_size,
    int64_t timeout_ms,
    wd_store** out,
    char** error) {
  *out = nullptr;
  return guarded(error, [&]() {
    if (host == nullptr || world_size < 1 || timeout_ms <= 0) {
      return invalid(error, "tcp store: host, world size >= 1 and timeout > 0 are required");
    }
    c10d::TCPStoreOptions options;
    options.port = port;
    options.isServer = is_server;
    options.numWorkers = static_cast<std::size_t>(world_size);
    // Every rank (clients too) counts itself in and waits for the others, as torch.distributed does.
    options.waitWorkers = true;
    options.timeout = millis(timeout_ms);
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
    *out = new wd_store{store};
    return static_cast<int>(WD_OK);
  });
}

int wd_file_store_new(
    const char* path,
    int world_size,
    int64_t timeout_ms,
    wd_store** out,
    char** error) {
  *out = nullptr;
  return guarded(error, [&]() {
    if (path == nullptr || world_size < 1 || timeout_ms <= 0) {
      return invalid(error, "file store: path, world size >= 1 and timeout > 0 are required");
    }
    auto store = c10::make_intrusive<c10d::FileStore>(std::string(path), world_size);
    store->setTimeout(millis(timeout_ms));
    *out = new wd_store{store};
    return static_cast<int>(WD_OK);
  });
}

void wd_store_free(wd_store* store) {
  try {
    delete store;
  } catch (...) {
  }
}

int wd_gloo_new(
    wd_store* store,
    int rank,
    int world_size,
    int64_t timeout_ms,
    const char* hostname,
    wd_group** out,
    char** error) {
  *out = nullptr;
  return guarded(error, [&]() {
    if (store == nullptr || hostname == nullptr || world_size < 1 || rank < 0 ||
        rank >= world_size || timeout_ms <= 0) {
      return invalid(error, "gloo: store, hostname, 0 <= rank < world size, timeout > 0");
    }
    auto options = c10d::ProcessGroupGloo::Options::create(millis(timeout_ms));
    options->devices.push_back(
        c10d::ProcessGroupGloo::createDeviceForHostname(std::string(hostname)));
    c10::intrusive_ptr<c10d::Backend> backend =
        c10::make_intrusive<c10d::ProcessGroupGloo>(store->store, rank, world_size, options);
    *out = new wd_group{backend, rank, world_size, false};
    return static_cast<int>(WD_OK);
  });
}

int wd_nccl_new(
    wd_store* store,
    int rank,
    int world_size,
    int64_t timeout_ms,
    wd_group** out,
    char** error) {
  *out = nullptr;
#ifdef WD_WITH_NCCL
  return guarded(error, [&]() {
    if (store == nullptr || world_size < 1 || rank < 0 || rank >= world_size ||
        timeout_ms <= 0) {
      return invalid(error, "nccl: store, 0 <= rank < world size, timeout > 0");
    }
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = millis(timeout_ms);
    c10::intrusive_ptr<c10d::Backend> backend =
        c10::make_intrusive<c10d::ProcessGroupNCCL>(store->store, rank, world_size, options);
    *out = new wd_group{backend, rank, world_size, true};
    return static_cast<int>(WD_OK);
  });
#else
  (void)store;
  (void)rank;
  (void)world_size;
  (void)timeout_ms;
  return invalid(error, "this build has no NCCL (enable the `nccl` feature on a CUDA torch)");
#endif
}

void wd_group_free(wd_group* group) {
  try {
    delete group;
  } catch (...) {
  }
}

int wd_all_reduce(wd_group* group, at::Tensor* tensor, int op, int64_t timeout_ms, char** error) {
  return guarded(error, [&]() {
    if (group == nullptr || tensor == nullptr) {
      return invalid(error, "all_reduce: null argument");
    }
    c10d::AllreduceOptions options;
    options.timeout = millis(timeout_ms);
    bool divide = false;
    switch (op) {
      case WD_SUM:
        options.reduceOp = c10d::ReduceOp::SUM;
        break;
      case WD_AVG:
        if (group->native_avg) {
          options.reduceOp = c10d::ReduceOp::AVG;
        } else {
          options.reduceOp = c10d::ReduceOp::SUM;
          divide = true;
        }
        break;
      case WD_MAX:
        options.reduceOp = c10d::ReduceOp::MAX;
        break;
      case WD_MIN:
        options.reduceOp = c10d::ReduceOp::MIN;
        break;
      default:
        return invalid(error, "all_reduce: unknown reduction");
    }
    std::vector<at::Tensor> tensors{*tensor};
    finish(group->backend->allreduce(tensors, options), timeout_ms);
    if (divide) {
      tensor->div_(group->size);
    }
    return static_cast<int>(WD_OK);
  });
}

int wd_reduce_scatter(
    wd_group* group,
    at::Tensor* input,
    at::Tensor* output,
    int op,
    int64_t timeout_ms,
    char** error) {
  return guarded(error, [&]() {
    if (group == nullptr || input == nullptr || output == nullptr) {
      return invalid(error, "reduce_scatter: null argument");
    }
    if (input->numel() != output->numel() * group->size) {
      return invalid(error, "reduce_scatter: input must hold world_size x output elements");
    }
    if (op != WD_SUM && op != WD_AVG) {
      return invalid(error, "reduce_scatter: only sum and avg");
    }
    c10d::ReduceScatterOptions options;
    options.timeout = millis(timeout_ms);
    bool divide = op == WD_AVG && !group->native_avg;
    options.reduceOp =
        (op == WD_AVG && group->native_avg) ? c10d::ReduceOp::AVG : c10d::ReduceOp::SUM;
    finish(group->backend->_reduce_scatter_base(*output, *input, options), timeout_ms);
    if (divide) {
      output->div_(group->size);
    }
    return static_cast<int>(WD_OK);
  });
}

int wd_all_gather(
    wd_group* group,
    at::Tensor* input,
    at::Tensor* output,
    int64_t timeout_ms,
    char** error) {
  return guarded(error, [&]() {
    if (group == nullptr || input == nullptr || output == nullptr) {
      return invalid(error, "all_gather: null argument");
    }
    if (output->numel() != input->numel() * group->size) {
      return invalid(error, "all_gather: output must hold world_size x input elements");
    }
    c10d::AllgatherOptions options;
    options.timeout = millis(timeout_ms);
    finish(group->backend->_allgather_base(*output, *input, options), timeout_ms);
    return static_cast<int>(WD_OK);
  });
}

int wd_broadcast(wd_group* group, at::Tensor* tensor, int root, int64_t timeout_ms, char** error) {
  return guarded(error, [&]() {
    if (group == nullptr || tensor == nullptr) {
      return invalid(error, "broadcast: null argument");
    }
    if (root < 0 || root >= group->size) {
      return invalid(error, "broadcast: root outside the group");
    }
    c10d::BroadcastOptions options;
    options.rootRank = root;
    options.timeout = millis(timeout_ms);
    std::vector<at::Tensor> tensors{*tensor};
    finish(group->backend->broadcast(tensors, options), timeout_ms);
    return static_cast<int>(WD_OK);
  });
}

int wd_barrier(wd_group* group, int64_t timeout_ms, char** error) {
  return guarded(error, [&]() {
    if (group == nullptr) {
      return invalid(error, "barrier: null argument");
    }
    c10d::BarrierOptions options;
    options.timeout = millis(timeout_ms);
    finish(group->backend->barrier(options), timeout_ms);
    return static_cast<int>(WD_OK);
  });
}

} // extern "C"
