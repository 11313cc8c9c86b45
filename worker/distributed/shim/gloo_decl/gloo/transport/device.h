#pragma once
// Declarations only: see ../README.

namespace gloo {
namespace transport {
class Device {
 public:
  virtual ~Device();
};
class UnboundBuffer {
 public:
  virtual ~UnboundBuffer();
};
} // namespace transport
} // namespace gloo
