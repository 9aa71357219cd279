// ringbus C++ API: a header-only C++17 wrapper over the C API of
// libringbus (ringbus.h). Link as for C: -lringbus.
//
//   ringbus::Client client;                          // $RINGBUS_SOCKET or the default
//   auto pub = client.publisher("md.AAPL",
//       ringbus::TopicConfig().mode(ringbus::Mode::Backpressure).max_message_size(256));
//   auto sub = client.subscriber("md.AAPL");
//   pub.publish("hello", /*tag*/ 7);
//   std::vector<std::uint8_t> buf(256);
//   ringbus_message_info info = sub.recv(buf);       // throws ringbus::Error
//
// Handles are RAII and move-only (Client, Publisher, Subscriber, Loan, LoanMany,
// MessageView). Failures throw ringbus::Error (the status and the library's
// message); try_ variants never throw and return a status or an optional.
// Payloads are ringbus::bytes_view / mutable_bytes_view: std::span with
// C++20, a minimal equivalent with C++17.
//
// Lifetimes, as for iterators: a Loan or LoanMany must not outlive its Publisher, a
// MessageView must not outlive its Subscriber. A Publisher or Subscriber is
// used by one thread at a time; a Client may be shared.

#ifndef RINGBUS_HPP
#define RINGBUS_HPP

#include <chrono>
#include <exception>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#if __cplusplus >= 202002L && defined(__has_include)
#if __has_include(<span>)
#include <span>
#endif
#endif

#include "ringbus.h"

namespace ringbus {

// ---------------------------------------------------------------- payloads

#if defined(__cpp_lib_span) && __cpp_lib_span >= 202002L
/// Read-only payload bytes.
using bytes_view = std::span<const std::uint8_t>;
/// Writable payload bytes (a loan's slot).
using mutable_bytes_view = std::span<std::uint8_t>;
#else
namespace detail {
/// A pointer and a length: the part of std::span that payloads need.
template <typename T>
class basic_bytes_view {
  public:
    constexpr basic_bytes_view() noexcept = default;
    constexpr basic_bytes_view(T* data, std::size_t size) noexcept : data_(data), size_(size) {}
    /// From any contiguous container of std::uint8_t (std::vector,
    /// std::array, another view), as std::span converts; strings go
    /// through as_bytes().
    template <typename C,
              typename = std::enable_if_t<
                  !std::is_same_v<std::decay_t<C>, basic_bytes_view> &&
                  std::is_convertible_v<decltype(std::declval<C&>().data()), T*> &&
                  std::is_convertible_v<decltype(std::declval<C&>().size()), std::size_t>>>
    constexpr basic_bytes_view(C&& c) noexcept  // NOLINT: implicit, as std::span
        : data_(c.data()), size_(c.size()) {}
    constexpr T* data() const noexcept { return data_; }
    constexpr std::size_t size() const noexcept { return size_; }
    constexpr std::size_t size_bytes() const noexcept { return size_; }
    constexpr bool empty() const noexcept { return size_ == 0; }
    constexpr T* begin() const noexcept { return data_; }
    constexpr T* end() const noexcept { return data_ + size_; }
    constexpr T& operator[](std::size_t i) const noexcept { return data_[i]; }
    constexpr basic_bytes_view first(std::size_t n) const noexcept { return {data_, n}; }
    constexpr basic_bytes_view subspan(std::size_t off, std::size_t n) const noexcept {
        return {data_ + off, n};
    }

  private:
    T* data_ = nullptr;
    std::size_t size_ = 0;
};
}  // namespace detail
/// Read-only payload bytes.
using bytes_view = detail::basic_bytes_view<const std::uint8_t>;
/// Writable payload bytes (a loan's slot).
using mutable_bytes_view = detail::basic_bytes_view<std::uint8_t>;
#endif

/// The bytes of a string, as a payload.
inline bytes_view as_bytes(std::string_view s) noexcept {
    return bytes_view(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

// ------------------------------------------------------------------ errors

/// A failed call: the ringbus_status and the library's message (what was
/// wrong and what to do). For RINGBUS_ERR_LAGGED, missed() is the number of
/// messages lost; for RINGBUS_ERR_BUFFER_TOO_SMALL, needed() the size.
class Error : public std::runtime_error {
  public:
    Error(int status, const char* message, const ringbus_message_info* info = nullptr)
        : std::runtime_error(std::string(ringbus_status_name(status)) + ": " +
                             (message ? message : "")),
          status_(status),
          info_(info ? *info : ringbus_message_info{}) {}
    /// The ringbus_status value (negative).
    ringbus_status status() const noexcept { return static_cast<ringbus_status>(status_); }
    /// The status's name, e.g. "RINGBUS_ERR_TIMEOUT".
    const char* status_name() const noexcept { return ringbus_status_name(status_); }
    /// RINGBUS_ERR_LAGGED: messages lost.
    std::uint64_t missed() const noexcept { return info_.missed; }
    /// RINGBUS_ERR_BUFFER_TOO_SMALL: bytes needed.
    std::size_t needed() const noexcept { return info_.len; }
    /// The ring the receive error concerns (receives only).
    std::uint64_t ring_id() const noexcept { return info_.ring_id; }

  private:
    int status_;
    ringbus_message_info info_;
};

/// Throws an Error unless `rc` is RINGBUS_OK.
inline void check(int rc, const ringbus_message_info* info = nullptr) {
    if (rc != RINGBUS_OK) throw Error(rc, ringbus_last_error(), info);
}

/// The message of the last failed call on this thread (after a try_ call).
inline const char* last_error() noexcept { return ringbus_last_error(); }

/// CLOCK_MONOTONIC nanoseconds, as in ringbus_message_info::timestamp_ns.
inline std::uint64_t now_ns() noexcept { return ringbus_now_ns(); }

namespace detail {
inline std::int64_t to_ns(std::chrono::nanoseconds t) noexcept {
    return t.count() < 0 ? 0 : static_cast<std::int64_t>(t.count());
}

/// Ends a loan (one slot or many) held through `pub` with `commit(p,
/// &seq)`: on failure (e.g. a length past the loan's) the loan is
/// abandoned, so the publisher is usable again, and the error thrown.
template <class Commit>
std::uint64_t end_loan(ringbus_publisher*& pub, Commit commit) {
    if (!pub) throw Error(RINGBUS_ERR_BAD_STATE, "the loan was committed or abandoned already");
    std::uint64_t seq = 0;
    ringbus_publisher* p = std::exchange(pub, nullptr);
    int rc = commit(p, &seq);
    if (rc != RINGBUS_OK) {
        Error e(rc, ringbus_last_error());
        ringbus_publisher_abandon(p);
        throw e;
    }
    return seq;
}
}  // namespace detail

// ------------------------------------------------------------------ config

/// What a full ring does.
enum class Mode : std::uint32_t {
    Overwrite = RINGBUS_MODE_OVERWRITE,
    Backpressure = RINGBUS_MODE_BACKPRESSURE,
};

/// How blocking receives wait.
enum class Wait : std::uint32_t {
    Adaptive = RINGBUS_WAIT_ADAPTIVE,
    Spin = RINGBUS_WAIT_SPIN,
    SpinYield = RINGBUS_WAIT_SPIN_YIELD,
    Block = RINGBUS_WAIT_BLOCK,
};

/// A topic's config, starting from the library's defaults:
/// TopicConfig().mode(Mode::Backpressure).capacity(256).
class TopicConfig {
  public:
    TopicConfig() noexcept { ringbus_topic_config_init(&c_); }
    TopicConfig& max_message_size(std::uint32_t n) noexcept { c_.max_message_size = n; return *this; }
    TopicConfig& capacity(std::uint32_t n) noexcept { c_.capacity = n; return *this; }
    TopicConfig& mode(Mode m) noexcept { c_.mode = static_cast<std::uint32_t>(m); return *this; }
    TopicConfig& max_subscribers(std::uint32_t n) noexcept { c_.max_subscribers = n; return *this; }
    const ringbus_topic_config& c() const noexcept { return c_; }

  private:
    ringbus_topic_config c_;
};

/// How a subscriber starts and waits, from the library's defaults
/// (latest, adaptive).
class SubscribeOptions {
  public:
    SubscribeOptions() noexcept { ringbus_subscribe_options_init(&o_); }
    SubscribeOptions& start_latest() noexcept { o_.start = RINGBUS_START_LATEST; return *this; }
    SubscribeOptions& start_earliest() noexcept { o_.start = RINGBUS_START_EARLIEST; return *this; }
    SubscribeOptions& start_at(std::uint64_t seq) noexcept {
        o_.start = RINGBUS_START_SEQUENCE;
        o_.start_sequence = seq;
        return *this;
    }
    /// A durable topic from what it journaled at `realtime_ns`
    /// (CLOCK_REALTIME) or later, then live.
    SubscribeOptions& start_at_time(std::uint64_t realtime_ns) noexcept {
        o_.start = RINGBUS_START_TIME;
        o_.start_sequence = realtime_ns;
        return *this;
    }
    SubscribeOptions& wait(Wait w) noexcept { o_.wait = static_cast<std::uint32_t>(w); return *this; }
    /// Delivers only messages whose (tag & mask) == value, from the first
    /// receive (as Subscriber::filter_tags).
    SubscribeOptions& tags(std::uint64_t mask, std::uint64_t value) noexcept {
        o_.tag_mask = mask;
        o_.tag_value = value;
        return *this;
    }
    const ringbus_subscribe_options& c() const noexcept { return o_; }

  private:
    ringbus_subscribe_options o_;
};

class Publisher;
class Subscriber;

// -------------------------------------------------------------------- Loan

/// A ring slot lent by Publisher::loan: fill data(), then commit(). Dropped
/// uncommitted, it publishes nothing. Must not outlive its Publisher.
class Loan {
  public:
    Loan(Loan&& o) noexcept
        : pub_(std::exchange(o.pub_, nullptr)), data_(o.data_), size_(o.size_) {}
    Loan& operator=(Loan&& o) noexcept {
        if (this != &o) {
            abandon();
            pub_ = std::exchange(o.pub_, nullptr);
            data_ = o.data_;
            size_ = o.size_;
        }
        return *this;
    }
    Loan(const Loan&) = delete;
    Loan& operator=(const Loan&) = delete;
    ~Loan() { abandon(); }

    /// The slot's bytes (empty once committed or abandoned).
    mutable_bytes_view data() const noexcept {
        return pub_ ? mutable_bytes_view(data_, size_) : mutable_bytes_view();
    }
    std::size_t size() const noexcept { return pub_ ? size_ : 0; }

    /// Publishes the first `len` bytes (all by default) with `tag`; returns
    /// the sequence number.
    std::uint64_t commit(std::uint64_t tag = 0) { return commit_first(size_, tag); }
    std::uint64_t commit_first(std::size_t len, std::uint64_t tag = 0) {
        return detail::end_loan(pub_, [&](ringbus_publisher* p, std::uint64_t* seq) {
            return ringbus_publisher_commit(p, len, tag, seq);
        });
    }
    /// Drops the loan: nothing is published.
    void abandon() noexcept {
        if (pub_) ringbus_publisher_abandon(std::exchange(pub_, nullptr));
    }

  private:
    friend class Publisher;
    Loan(ringbus_publisher* p, void* data, std::size_t size) noexcept
        : pub_(p), data_(static_cast<std::uint8_t*>(data)), size_(size) {}
    ringbus_publisher* pub_;
    std::uint8_t* data_;
    std::size_t size_;
};

// ---------------------------------------------------------------- LoanMany

/// Consecutive ring slots lent by Publisher::loan_many: fill each
/// (operator[], slot_len() bytes), then commit() publishes them in order
/// with one head update and wake-up for the lot. Dropped uncommitted, it
/// publishes nothing. Must not outlive its Publisher.
class LoanMany {
  public:
    LoanMany(LoanMany&& o) noexcept
        : pub_(std::exchange(o.pub_, nullptr)), slots_(std::move(o.slots_)), len_(o.len_) {}
    LoanMany& operator=(LoanMany&& o) noexcept {
        if (this != &o) {
            abandon();
            pub_ = std::exchange(o.pub_, nullptr);
            slots_ = std::move(o.slots_);
            len_ = o.len_;
        }
        return *this;
    }
    LoanMany(const LoanMany&) = delete;
    LoanMany& operator=(const LoanMany&) = delete;
    ~LoanMany() { abandon(); }

    /// How many slots are lent (0 once committed or abandoned).
    std::size_t count() const noexcept { return pub_ ? slots_.size() : 0; }
    /// Bytes lent in each slot.
    std::size_t slot_len() const noexcept { return len_; }
    /// Slot `i`'s bytes (empty when `i >= count()`).
    mutable_bytes_view operator[](std::size_t i) const noexcept {
        if (i >= count()) return mutable_bytes_view();
        return mutable_bytes_view(static_cast<std::uint8_t*>(slots_[i]), len_);
    }

    /// Publishes every slot, whole, with `tag`; returns the first one's
    /// sequence number (the others follow it).
    std::uint64_t commit(std::uint64_t tag = 0) {
        std::vector<std::uint64_t> tags(count(), tag);
        return commit_first(count(), nullptr, tags.data());
    }
    /// Publishes the first `n` slots, slot `i` with `lens[i]` bytes (all
    /// when `lens` is null) and tag `tags[i]` (0 when null); the rest are
    /// not published. Returns the first one's sequence number.
    std::uint64_t commit_first(std::size_t n, const std::size_t* lens = nullptr,
                               const std::uint64_t* tags = nullptr) {
        return detail::end_loan(pub_, [&](ringbus_publisher* p, std::uint64_t* seq) {
            return ringbus_publisher_commit_many(p, n, lens, tags, seq);
        });
    }
    /// Drops the loan: nothing is published.
    void abandon() noexcept {
        if (pub_) ringbus_publisher_abandon(std::exchange(pub_, nullptr));
    }

  private:
    friend class Publisher;
    LoanMany(ringbus_publisher* p, std::vector<void*> slots, std::size_t len) noexcept
        : pub_(p), slots_(std::move(slots)), len_(len) {}
    ringbus_publisher* pub_;
    std::vector<void*> slots_;
    std::size_t len_;
};

// --------------------------------------------------------------- Publisher

/// A publisher of one topic, writing its own ring. Closing it (destruction)
/// ends its stream: subscribers drain the ring, then see its end.
class Publisher {
  public:
    Publisher(Publisher&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
    Publisher& operator=(Publisher&& o) noexcept {
        if (this != &o) {
            close();
            h_ = std::exchange(o.h_, nullptr);
        }
        return *this;
    }
    Publisher(const Publisher&) = delete;
    Publisher& operator=(const Publisher&) = delete;
    ~Publisher() { close(); }

    /// Copies `data` into the ring as one message; returns its sequence
    /// number. A full back-pressure ring is waited on without limit.
    std::uint64_t publish(bytes_view data, std::uint64_t tag = 0) {
        std::uint64_t seq = 0;
        check(ringbus_publisher_publish(h_, data.data(), data.size(), tag, &seq));
        return seq;
    }
    std::uint64_t publish(std::string_view s, std::uint64_t tag = 0) { return publish(as_bytes(s), tag); }
    std::uint64_t publish(const char* s, std::uint64_t tag = 0) {
        return publish(std::string_view(s), tag);
    }
    /// As publish, waiting at most `timeout` for room (else RINGBUS_ERR_TIMEOUT).
    std::uint64_t publish_for(bytes_view data, std::uint64_t tag, std::chrono::nanoseconds timeout) {
        std::uint64_t seq = 0;
        check(ringbus_publisher_publish_timeout(h_, data.data(), data.size(), tag,
                                                static_cast<std::uint64_t>(detail::to_ns(timeout)),
                                                &seq));
        return seq;
    }
    /// Never waits, never throws: RINGBUS_OK (and `*seq`), RINGBUS_ERR_FULL
    /// on a full back-pressure ring, or another status.
    ringbus_status try_publish(bytes_view data, std::uint64_t tag = 0,
                               std::uint64_t* seq = nullptr) noexcept {
        return static_cast<ringbus_status>(
            ringbus_publisher_try_publish(h_, data.data(), data.size(), tag, seq));
    }

    /// Publishes `msgs` in order as one batch (one head update and wake-up
    /// per batch); returns the first one's sequence number. Waits for room
    /// like publish; a message too large fails the batch before any is
    /// published.
    std::uint64_t publish_batch(const std::vector<bytes_view>& msgs, std::uint64_t tag = 0) {
        std::vector<ringbus_bytes> raw;
        raw.reserve(msgs.size());
        for (bytes_view m : msgs) raw.push_back(ringbus_bytes{m.data(), m.size()});
        std::uint64_t seq = 0;
        check(ringbus_publisher_publish_batch(h_, raw.data(), raw.size(), tag, &seq));
        return seq;
    }

    /// Lends the next slot's `len` bytes, waiting for room like publish.
    Loan loan(std::size_t len) {
        void* data = nullptr;
        check(ringbus_publisher_loan(h_, len, &data));
        return Loan(h_, data, len);
    }
    /// As loan, but never waits nor throws: nullopt when the ring is full or
    /// the call failed (last_error() says which).
    std::optional<Loan> try_loan(std::size_t len) noexcept {
        void* data = nullptr;
        if (ringbus_publisher_try_loan(h_, len, &data) != RINGBUS_OK) return std::nullopt;
        return Loan(h_, data, len);
    }

    /// Lends the next `n` slots, `len` bytes each, waiting until all are
    /// free; LoanMany::commit publishes them as one batch.
    LoanMany loan_many(std::size_t n, std::size_t len) {
        std::vector<void*> slots(n);
        check(ringbus_publisher_loan_many(h_, n, len, slots.data()));
        return LoanMany(h_, std::move(slots), len);
    }
    /// As loan_many, but never waits: nullopt when fewer than `n` slots are
    /// free or the call failed (last_error() says which).
    std::optional<LoanMany> try_loan_many(std::size_t n, std::size_t len) {
        std::vector<void*> slots(n);
        if (ringbus_publisher_try_loan_many(h_, n, len, slots.data()) != RINGBUS_OK) return std::nullopt;
        return LoanMany(h_, std::move(slots), len);
    }

    /// Stamp messages with CLOCK_MONOTONIC ns (off by default).
    void set_timestamps(bool on) { check(ringbus_publisher_set_timestamps(h_, on ? 1 : 0)); }
    /// The topic's config.
    ringbus_topic_config config() const {
        ringbus_topic_config c{};
        check(ringbus_publisher_config(h_, &c));
        return c;
    }
    /// The C handle (for calls this wrapper lacks).
    ringbus_publisher* handle() const noexcept { return h_; }
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// Closes now (the destructor does it otherwise).
    void close() noexcept {
        if (h_) ringbus_publisher_close(std::exchange(h_, nullptr));
    }

  private:
    friend class Client;
    explicit Publisher(ringbus_publisher* h) noexcept : h_(h) {}
    ringbus_publisher* h_;
};

// ------------------------------------------------------------- MessageView

/// A message read in place (zero-copy receive, back-pressure topics): its
/// slot is held until the view is destroyed or release()d, and meanwhile
/// the subscriber receives nothing else. Must not outlive its Subscriber.
class MessageView {
  public:
    MessageView(MessageView&& o) noexcept : sub_(std::exchange(o.sub_, nullptr)), v_(o.v_) {}
    MessageView& operator=(MessageView&& o) noexcept {
        if (this != &o) {
            release();
            sub_ = std::exchange(o.sub_, nullptr);
            v_ = o.v_;
        }
        return *this;
    }
    MessageView(const MessageView&) = delete;
    MessageView& operator=(const MessageView&) = delete;
    ~MessageView() { release(); }

    /// The payload, in the ring (empty once released).
    bytes_view data() const noexcept {
        return sub_ ? bytes_view(static_cast<const std::uint8_t*>(v_.data), v_.info.len)
                    : bytes_view();
    }
    const ringbus_message_info& info() const noexcept { return v_.info; }
    std::uint64_t sequence() const noexcept { return v_.info.sequence; }
    std::uint64_t tag() const noexcept { return v_.info.tag; }
    std::uint64_t timestamp_ns() const noexcept { return v_.info.timestamp_ns; }
    std::uint64_t ring_id() const noexcept { return v_.info.ring_id; }
    std::size_t size() const noexcept { return sub_ ? v_.info.len : 0; }

    /// Gives the slot back to the publisher.
    void release() noexcept {
        if (sub_) ringbus_subscriber_release(std::exchange(sub_, nullptr));
    }

  private:
    friend class Subscriber;
    MessageView(ringbus_subscriber* s, const ringbus_message_view& v) noexcept : sub_(s), v_(v) {}
    ringbus_subscriber* sub_;
    ringbus_message_view v_;
};

// -------------------------------------------------------------- Subscriber

/// A subscription to one topic or a pattern: every publisher's ring,
/// including those of publishers (and matching topics) that appear later. Receives throw Error with
/// RINGBUS_ERR_LAGGED (missed() lost; receiving goes on),
/// RINGBUS_ERR_END_OF_STREAM (a publisher left; the subscription goes on),
/// RINGBUS_ERR_TIMEOUT, RINGBUS_ERR_BUFFER_TOO_SMALL (needed()).
class Subscriber {
  public:
    Subscriber(Subscriber&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
    Subscriber& operator=(Subscriber&& o) noexcept {
        if (this != &o) {
            close();
            h_ = std::exchange(o.h_, nullptr);
        }
        return *this;
    }
    Subscriber(const Subscriber&) = delete;
    Subscriber& operator=(const Subscriber&) = delete;
    ~Subscriber() { close(); }

    /// Waits for the next message (without limit) and copies it into `buf`.
    ringbus_message_info recv(mutable_bytes_view buf) {
        return recv_ns(buf, RINGBUS_WAIT_FOREVER);
    }
    /// As recv, waiting at most `timeout` (else RINGBUS_ERR_TIMEOUT).
    ringbus_message_info recv_for(mutable_bytes_view buf, std::chrono::nanoseconds timeout) {
        return recv_ns(buf, detail::to_ns(timeout) == 0 ? 1 : detail::to_ns(timeout));
    }
    /// Never waits, never throws: RINGBUS_OK with `info` filled,
    /// RINGBUS_ERR_EMPTY, or another status (`info` as the C API says).
    ringbus_status try_recv(mutable_bytes_view buf, ringbus_message_info& info) noexcept {
        return static_cast<ringbus_status>(
            ringbus_subscriber_try_recv(h_, buf.data(), buf.size(), &info));
    }

    /// Receives, without waiting, up to `max` messages that are ready, in
    /// order: each is copied into `buf` and handed to
    /// `f(bytes_view data, const ringbus_message_info& info)` before the
    /// next. Returns how many (0: none was ready). What ends a batch early
    /// (a loss, a ring's end) is the next receive's answer; an error on
    /// the first message throws as recv does. An exception from `f` ends
    /// the batch and is rethrown (the message it was given counts as
    /// received).
    template <class F>
    std::size_t try_recv_batch(mutable_bytes_view buf, std::size_t max, F&& f) {
        struct Ctx {
            F* f;
            std::exception_ptr error;
        } ctx{&f, nullptr};
        auto call = [](const ringbus_message_info* info, const std::uint8_t* data,
                       std::size_t len, void* user) {
            auto* c = static_cast<Ctx*>(user);
            try {
                (*c->f)(bytes_view(data, len), *info);
                return 1;
            } catch (...) {
                c->error = std::current_exception();
                return 0;
            }
        };
        std::size_t n = 0;
        ringbus_message_info info{};
        int rc = ringbus_subscriber_try_recv_batch(h_, buf.data(), buf.size(), max, call, &ctx,
                                                   &n, &info);
        if (ctx.error) std::rethrow_exception(ctx.error);
        if (rc == RINGBUS_ERR_EMPTY) return 0;
        check(rc, &info);
        return n;
    }

    /// Zero-copy receive (back-pressure topics): waits without limit.
    MessageView recv_ref() { return recv_ref_ns(RINGBUS_WAIT_FOREVER); }
    /// As recv_ref, waiting at most `timeout`.
    MessageView recv_ref_for(std::chrono::nanoseconds timeout) {
        return recv_ref_ns(detail::to_ns(timeout) == 0 ? 1 : detail::to_ns(timeout));
    }
    /// Never waits nor throws: nullopt when nothing is there or the call
    /// failed (last_error() says which).
    std::optional<MessageView> try_recv_ref() noexcept {
        ringbus_message_view v{};
        if (ringbus_subscriber_recv_ref(h_, 0, &v) != RINGBUS_OK) return std::nullopt;
        return MessageView(h_, v);
    }

    /// The topic's config, once a publisher has set it.
    std::optional<ringbus_topic_config> config() const noexcept {
        ringbus_topic_config c{};
        if (ringbus_subscriber_config(h_, &c) != RINGBUS_OK) return std::nullopt;
        return c;
    }
    /// Messages lost to overwriting, over all rings.
    std::uint64_t lagged_total() const {
        std::uint64_t n = 0;
        check(ringbus_subscriber_lagged_total(h_, &n));
        return n;
    }
    /// Messages published but not yet read, over all rings (a look at each
    /// ring's head: now and then, not per message).
    std::uint64_t backlog() const {
        std::uint64_t n = 0;
        check(ringbus_subscriber_backlog(h_, &n));
        return n;
    }
    /// The name of topic `id` (ringbus_message_info::topic): the topic, or
    /// one a pattern matched. Throws RINGBUS_ERR_NOT_FOUND for an unknown id.
    std::string topic_name(std::uint32_t id) const {
        char name[RINGBUS_TOPIC_NAME_CAPACITY];
        std::size_t len = 0;
        check(ringbus_subscriber_topic_name(h_, id, name, sizeof name, &len));
        return std::string(name, len);
    }
    /// Delivers only messages whose (tag & mask) == value; mask 0 drops
    /// this condition.
    void filter_tags(std::uint64_t mask, std::uint64_t value) {
        check(ringbus_subscriber_filter_tags(h_, mask, value));
    }
    /// Delivers only messages whose tag is one of `count` tags (at most
    /// RINGBUS_MAX_FILTER_TAGS; 0 drops this condition).
    void filter_tag_set(const std::uint64_t* tags, std::size_t count) {
        check(ringbus_subscriber_filter_tag_set(h_, tags, count));
    }
    /// Delivers only messages `predicate` accepts (nonzero), called with
    /// `user` on the receiving thread (see ringbus_subscriber_filter).
    void filter(ringbus_filter_fn predicate, void* user) {
        check(ringbus_subscriber_filter(h_, predicate, user));
    }
    /// Drops every filter.
    void clear_filters() { check(ringbus_subscriber_clear_filters(h_)); }
    /// Messages the filters turned down, over all rings.
    std::uint64_t filtered_total() const {
        std::uint64_t n = 0;
        check(ringbus_subscriber_filtered_total(h_, &n));
        return n;
    }
    ringbus_subscriber* handle() const noexcept { return h_; }
    explicit operator bool() const noexcept { return h_ != nullptr; }

    /// Closes now (the destructor does it otherwise).
    void close() noexcept {
        if (h_) ringbus_subscriber_close(std::exchange(h_, nullptr));
    }

  private:
    friend class Client;
    explicit Subscriber(ringbus_subscriber* h) noexcept : h_(h) {}

    ringbus_message_info recv_ns(mutable_bytes_view buf, std::int64_t timeout_ns) {
        ringbus_message_info info{};
        check(ringbus_subscriber_recv(h_, buf.data(), buf.size(), timeout_ns, &info), &info);
        return info;
    }
    MessageView recv_ref_ns(std::int64_t timeout_ns) {
        ringbus_message_view v{};
        check(ringbus_subscriber_recv_ref(h_, timeout_ns, &v), &v.info);
        return MessageView(h_, v);
    }
    ringbus_subscriber* h_;
};

// ------------------------------------------------------------------ Client

/// A connection to a broker. Publishers and subscribers made from it keep
/// the connection alive, so it may be destroyed before them.
class Client {
  public:
    /// Connects to the broker at `socket_path`; nullptr: $RINGBUS_SOCKET,
    /// else the default path. Throws (RINGBUS_ERR_NO_BROKER...).
    explicit Client(const char* socket_path = nullptr) {
        check(ringbus_client_connect(socket_path, &h_));
    }
    explicit Client(const std::string& socket_path) : Client(socket_path.c_str()) {}
    /// As the constructor, never throwing: nullopt on failure
    /// (last_error() says why).
    static std::optional<Client> try_connect(const char* socket_path = nullptr) noexcept {
        ringbus_client* h = nullptr;
        if (ringbus_client_connect(socket_path, &h) != RINGBUS_OK) return std::nullopt;
        return Client(h);
    }

    Client(Client&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
    Client& operator=(Client&& o) noexcept {
        if (this != &o) {
            close();
            h_ = std::exchange(o.h_, nullptr);
        }
        return *this;
    }
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;
    ~Client() { close(); }

    /// Becomes a publisher of `topic`, created with `config` if new (an
    /// existing topic must have the same config).
    Publisher publisher(const std::string& topic, const TopicConfig& config = TopicConfig()) {
        ringbus_publisher* p = nullptr;
        check(ringbus_publisher_open(h_, topic.c_str(), &config.c(), &p));
        return Publisher(p);
    }
    /// Becomes a publisher of an existing topic, with its config.
    Publisher publisher_existing(const std::string& topic) {
        ringbus_publisher* p = nullptr;
        check(ringbus_publisher_open_existing(h_, topic.c_str(), &p));
        return Publisher(p);
    }
    /// Subscribes to `topic` (which need not exist yet), or to the topics
    /// a pattern matches (`md.*.AAPL`, `md.>`), now and later.
    Subscriber subscriber(const std::string& topic,
                          const SubscribeOptions& options = SubscribeOptions()) {
        ringbus_subscriber* s = nullptr;
        check(ringbus_subscriber_open(h_, topic.c_str(), &options.c(), &s));
        return Subscriber(s);
    }

    ringbus_client* handle() const noexcept { return h_; }
    explicit operator bool() const noexcept { return h_ != nullptr; }
    void close() noexcept {
        if (h_) ringbus_client_close(std::exchange(h_, nullptr));
    }

  private:
    explicit Client(ringbus_client* h) noexcept : h_(h) {}
    ringbus_client* h_ = nullptr;
};

}  // namespace ringbus

#endif  // RINGBUS_HPP
