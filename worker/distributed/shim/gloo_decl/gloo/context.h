#pragma once
// Declarations only: see README next to this directory.
#include <chrono>

namespace gloo {
class Context {
 public:
  virtual ~Context();
  void setTimeout(std::chrono::milliseconds timeout);
};
} // namespace gloo
