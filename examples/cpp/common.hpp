// The test payload shared with examples/c (common.h): message i has a
// length and bytes derived from i, so a subscriber can check that every
// message arrived intact and in order.
#ifndef RINGBUS_EXAMPLES_CPP_COMMON_HPP
#define RINGBUS_EXAMPLES_CPP_COMMON_HPP

#include <cstddef>
#include <cstdint>

#include "ringbus.hpp"

namespace example {

inline std::size_t payload_len(std::uint64_t i, std::size_t max) {
    return static_cast<std::size_t>((i * 7919u) % (max + 1));
}

inline std::uint8_t payload_byte(std::uint64_t i, std::size_t j) {
    return static_cast<std::uint8_t>(i * 31u + j * 7u + (i >> 8));
}

inline void payload_fill(ringbus::mutable_bytes_view buf, std::uint64_t i) {
    for (std::size_t j = 0; j < buf.size(); j++) buf[j] = payload_byte(i, j);
}

inline bool payload_ok(ringbus::bytes_view got, std::uint64_t i, std::size_t max) {
    if (got.size() != payload_len(i, max)) return false;
    for (std::size_t j = 0; j < got.size(); j++)
        if (got[j] != payload_byte(i, j)) return false;
    return true;
}

}  // namespace example

#endif
