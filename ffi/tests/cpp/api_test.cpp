// The C++ wrapper's contract (include/ringbus.hpp) against a live broker
// ($RINGBUS_SOCKET): RAII and moves, exceptions carrying the status and
// message, try_ variants that never throw, zero-copy loans and views, and
// misuse (moved-from handles, a bad commit) reported, never a crash.
// Prints "all checks passed".
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ringbus.hpp"

using namespace std::chrono_literals;

static int failures = 0;

#define EXPECT(cond)                                                              \
    do {                                                                          \
        if (!(cond)) {                                                            \
            std::fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                           \
        }                                                                         \
    } while (0)

// Runs `f`, expecting a ringbus::Error with `status`; returns it.
template <typename F>
static std::optional<ringbus::Error> expect_error(ringbus_status status, F&& f, int line) {
    try {
        f();
    } catch (const ringbus::Error& e) {
        if (e.status() != status) {
            std::fprintf(stderr, "line %d: expected %s, got %s\n", line,
                         ringbus_status_name(status), e.what());
            failures++;
        } else if (std::strlen(e.what()) < std::strlen(e.status_name()) + 10) {
            std::fprintf(stderr, "line %d: message too short: %s\n", line, e.what());
            failures++;
        }
        return e;
    }
    std::fprintf(stderr, "line %d: expected %s, nothing thrown\n", line, ringbus_status_name(status));
    failures++;
    return std::nullopt;
}
#define EXPECT_ERROR(status, ...) expect_error(status, [&] { __VA_ARGS__; }, __LINE__)

static std::string unique(const char* name) {
    static int n = 0;
    return std::string("cpp.") + name + "." + std::to_string(n++);
}

static void round_trip_and_moves(ringbus::Client& client) {
    std::string topic = unique("rt");
    ringbus::Publisher pub = client.publisher(topic);
    ringbus::Subscriber sub = client.subscriber(topic);
    EXPECT(pub.publish("hello", 7) == 0);
    std::vector<std::uint8_t> v{1, 2, 3};
    EXPECT(pub.publish(v, 8) == 1);
    std::array<std::uint8_t, 64> buf{};
    ringbus_message_info info = sub.recv_for(buf, 10s);
    EXPECT(info.sequence == 0 && info.tag == 7 && info.len == 5);
    EXPECT(std::memcmp(buf.data(), "hello", 5) == 0);
    EXPECT(sub.try_recv(buf, info) == RINGBUS_OK && info.len == 3 && buf[2] == 3);
    EXPECT(sub.try_recv(buf, info) == RINGBUS_ERR_EMPTY);

    // A batch: in order, one tag.
    std::vector<ringbus::bytes_view> batch{ringbus::as_bytes("ab"), v};
    EXPECT(pub.publish_batch(batch, 4) == 2);
    EXPECT(sub.try_recv(buf, info) == RINGBUS_OK && info.sequence == 2 && info.len == 2 &&
           info.tag == 4);
    EXPECT(sub.try_recv(buf, info) == RINGBUS_OK && info.sequence == 3 && info.len == 3);
    EXPECT(sub.try_recv(buf, info) == RINGBUS_ERR_EMPTY);

    // Received as a batch: in order, each with its own info.
    EXPECT(pub.publish_batch(batch, 5) == 4);
    std::vector<std::pair<std::uint64_t, std::size_t>> got;
    std::size_t n = sub.try_recv_batch(buf, 8, [&](ringbus::bytes_view d,
                                                   const ringbus_message_info& i) {
        EXPECT(d.size() == i.len && i.tag == 5);
        got.emplace_back(i.sequence, d.size());
    });
    EXPECT(n == 2 && got.size() == 2 && got[0] == std::make_pair(std::uint64_t{4}, std::size_t{2}) &&
           got[1] == std::make_pair(std::uint64_t{5}, std::size_t{3}));
    EXPECT(sub.try_recv_batch(buf, 8, [](ringbus::bytes_view, const ringbus_message_info&) {}) ==
           0);
    // An exception from the callback ends the batch and comes out.
    EXPECT(pub.publish_batch(batch, 6) == 6);
    bool thrown = false;
    try {
        sub.try_recv_batch(buf, 8, [](ringbus::bytes_view, const ringbus_message_info&) {
            throw std::runtime_error("stop");
        });
    } catch (const std::runtime_error& e) {
        thrown = std::string(e.what()) == "stop";
    }
    EXPECT(thrown);
    EXPECT(sub.try_recv(buf, info) == RINGBUS_OK && info.sequence == 7);

    // Moves hand the handle over; the moved-from object is empty and its
    // calls fail cleanly.
    ringbus::Publisher moved = std::move(pub);
    EXPECT(!pub && moved);
    EXPECT(moved.publish("again") == 8);
    EXPECT_ERROR(RINGBUS_ERR_NULL_POINTER, pub.publish("x"));
    EXPECT(pub.try_publish(ringbus::as_bytes("x")) == RINGBUS_ERR_NULL_POINTER);
    EXPECT(!pub.try_loan(1));
    ringbus::Subscriber sub2 = std::move(sub);
    EXPECT(sub2.recv_for(buf, 10s).sequence == 8);
    EXPECT(sub.try_recv(buf, info) == RINGBUS_ERR_NULL_POINTER);
    sub = std::move(sub2);  // move-assign back
    EXPECT(sub && !sub2);
    EXPECT(sub.config().has_value() && sub.config()->max_message_size == 1024);
    moved.close();
    moved.close();  // twice is harmless
    EXPECT_ERROR(RINGBUS_ERR_END_OF_STREAM, sub.recv_for(buf, 10s));
}

static void loans(ringbus::Client& client) {
    std::string topic = unique("loan");
    auto pub = client.publisher(topic, ringbus::TopicConfig()
                                           .mode(ringbus::Mode::Backpressure)
                                           .capacity(2)
                                           .max_message_size(16));
    auto sub = client.subscriber(topic);
    {
        ringbus::Loan loan = pub.loan(4);
        EXPECT(loan.size() == 4);
        std::memcpy(loan.data().data(), "abcd", 4);
        // While a loan is out the publisher is busy.
        EXPECT(pub.try_publish(ringbus::as_bytes("x")) == RINGBUS_ERR_BAD_STATE);
        EXPECT(loan.commit(3) == 0);
        EXPECT(loan.size() == 0 && loan.data().empty());
        EXPECT_ERROR(RINGBUS_ERR_BAD_STATE, loan.commit());
    }
    {
        ringbus::Loan dropped = pub.loan(2);  // abandoned by the destructor
        ringbus::Loan taken = std::move(dropped);
        EXPECT(dropped.size() == 0 && taken.size() == 2);
    }
    {
        ringbus::Loan loan = pub.loan(4);
        // Committing more than lent: refused, and the loan ends unpublished.
        EXPECT_ERROR(RINGBUS_ERR_INVALID_ARGUMENT, loan.commit_first(5));
        EXPECT(pub.publish("ok", 1) == 1);
    }
    EXPECT_ERROR(RINGBUS_ERR_TOO_LARGE, pub.loan(17));
    EXPECT_ERROR(RINGBUS_ERR_TOO_LARGE, pub.publish(std::string(17, 'x')));
    // Full: two messages unread in a ring of two.
    EXPECT(!pub.try_loan(1));
    EXPECT(pub.try_publish(ringbus::as_bytes("x")) == RINGBUS_ERR_FULL);
    EXPECT_ERROR(RINGBUS_ERR_TIMEOUT, pub.publish_for(ringbus::as_bytes("x"), 0, 10ms));
    std::array<std::uint8_t, 16> buf{};
    ringbus_message_info info = sub.recv_for(buf, 10s);
    EXPECT(info.tag == 3 && info.len == 4 && std::memcmp(buf.data(), "abcd", 4) == 0);
    std::optional<ringbus::Loan> room = pub.try_loan(1);
    EXPECT(room.has_value());
    if (room) {
        room->data()[0] = 'z';
        EXPECT(room->commit(9) == 2);
    }
}

static void loans_of_many(ringbus::Client& client) {
    std::string topic = unique("many");
    auto pub = client.publisher(topic, ringbus::TopicConfig()
                                           .mode(ringbus::Mode::Backpressure)
                                           .capacity(4)
                                           .max_message_size(16));
    auto sub = client.subscriber(topic);
    {
        ringbus::LoanMany loans = pub.loan_many(3, 2);
        EXPECT(loans.count() == 3 && loans.slot_len() == 2);
        for (std::size_t i = 0; i < loans.count(); i++) {
            std::memcpy(loans[i].data(), i == 1 ? "bb" : "aa", 2);
        }
        EXPECT(loans[3].empty());
        EXPECT(pub.try_publish(ringbus::as_bytes("x")) == RINGBUS_ERR_BAD_STATE);
        std::size_t lens[2] = {2, 1};
        std::uint64_t tags[2] = {4, 5};
        EXPECT(loans.commit_first(2, lens, tags) == 0);
        EXPECT(loans.count() == 0);
        EXPECT_ERROR(RINGBUS_ERR_BAD_STATE, loans.commit());
    }
    std::array<std::uint8_t, 16> buf{};
    ringbus_message_info info = sub.recv_for(buf, 10s);
    EXPECT(info.sequence == 0 && info.tag == 4 && info.len == 2 && std::memcmp(buf.data(), "aa", 2) == 0);
    info = sub.recv_for(buf, 10s);
    EXPECT(info.sequence == 1 && info.tag == 5 && info.len == 1 && buf[0] == 'b');
    EXPECT_ERROR(RINGBUS_ERR_INVALID_ARGUMENT, pub.loan_many(5, 1));
    {
        ringbus::LoanMany dropped = pub.loan_many(2, 1);  // abandoned by the destructor
        ringbus::LoanMany taken = std::move(dropped);
        EXPECT(dropped.count() == 0 && taken.count() == 2);
    }
    {
        ringbus::LoanMany loans = pub.loan_many(4, 1);
        for (std::size_t i = 0; i < 4; i++) loans[i][0] = static_cast<std::uint8_t>('0' + i);
        EXPECT(loans.commit(7) == 2);
    }
    EXPECT(!pub.try_loan_many(1, 1));
    for (std::uint64_t i = 0; i < 4; i++) {
        info = sub.recv_for(buf, 10s);
        EXPECT(info.sequence == 2 + i && info.tag == 7 && buf[0] == '0' + i);
    }
    {
        // A loan of none: nothing to fill, nothing published.
        ringbus::LoanMany none = pub.loan_many(0, 1);
        EXPECT(none.count() == 0);
        none.commit();
    }
    EXPECT(pub.try_publish(ringbus::as_bytes("y")) == RINGBUS_OK);
    info = sub.recv_for(buf, 10s);
    EXPECT(info.sequence == 6 && buf[0] == 'y');
}

static void zero_copy(ringbus::Client& client) {
    std::string topic = unique("zc");
    auto pub = client.publisher(
        topic, ringbus::TopicConfig().mode(ringbus::Mode::Backpressure).capacity(1));
    auto sub = client.subscriber(topic);
    EXPECT(!sub.try_recv_ref());
    pub.publish("held", 4);
    {
        ringbus::MessageView msg = sub.recv_ref_for(10s);
        EXPECT(msg.size() == 4 && msg.tag() == 4 && msg.sequence() == 0);
        EXPECT(std::memcmp(msg.data().data(), "held", 4) == 0);
        // The slot is ours until the view goes: the ring of one is full.
        EXPECT(pub.try_publish(ringbus::as_bytes("next")) == RINGBUS_ERR_FULL);
        std::array<std::uint8_t, 8> buf{};
        ringbus_message_info info{};
        EXPECT(sub.try_recv(buf, info) == RINGBUS_ERR_BAD_STATE);
        ringbus::MessageView other = std::move(msg);
        EXPECT(msg.size() == 0 && other.size() == 4);
    }
    EXPECT(pub.try_publish(ringbus::as_bytes("next")) == RINGBUS_OK);
    std::optional<ringbus::MessageView> next = sub.try_recv_ref();
    EXPECT(next && next->size() == 4);
    if (next) next->release();
    EXPECT(next && next->data().empty());

    // Overwrite topics refuse zero-copy receives.
    std::string ow = unique("ow");
    auto opub = client.publisher(ow);
    auto osub = client.subscriber(ow);
    opub.publish("x");
    EXPECT_ERROR(RINGBUS_ERR_ZERO_COPY_UNSUPPORTED, osub.recv_ref_for(10s));
}

static void receive_errors(ringbus::Client& client) {
    std::string topic = unique("rx");
    auto pub = client.publisher(topic, ringbus::TopicConfig().capacity(4));
    auto sub = client.subscriber(topic, ringbus::SubscribeOptions().wait(ringbus::Wait::Block));
    std::array<std::uint8_t, 1024> buf{};
    EXPECT_ERROR(RINGBUS_ERR_TIMEOUT, sub.recv_for(buf, 10ms));
    for (int i = 0; i < 10; i++) pub.publish(std::string(1, char('0' + i)));
    EXPECT(sub.backlog() == 10);
    auto lag = EXPECT_ERROR(RINGBUS_ERR_LAGGED, sub.recv_for(buf, 10s));
    EXPECT(lag && lag->missed() == 6);
    EXPECT(sub.lagged_total() == 6);
    EXPECT(sub.recv_for(buf, 10s).sequence == 6);
    pub.publish(std::string(100, 'x'));
    EXPECT(sub.recv_for(buf, 10s).sequence == 7);
    EXPECT(sub.recv_for(buf, 10s).sequence == 8);
    EXPECT(sub.recv_for(buf, 10s).sequence == 9);
    auto small = EXPECT_ERROR(RINGBUS_ERR_BUFFER_TOO_SMALL,
                              sub.recv_for(ringbus::mutable_bytes_view(buf.data(), 10), 10s));
    EXPECT(small && small->needed() == 100);
    EXPECT(sub.recv_for(buf, 10s).len == 100);  // the message stayed unread
    auto late = client.subscriber(topic, ringbus::SubscribeOptions().start_at(8));
    EXPECT(late.recv_for(buf, 10s).sequence == 8);
    auto early = client.subscriber(topic, ringbus::SubscribeOptions().start_earliest());
    EXPECT(early.recv_for(buf, 10s).sequence == 7);
}

// Keeps messages whose payload's first byte is even; counts its calls.
static int even_first_byte(const ringbus_message_info*, const std::uint8_t* data, std::size_t len,
                           void* user) {
    ++*static_cast<int*>(user);
    return len > 0 && data[0] % 2 == 0;
}

static void patterns_and_filters(ringbus::Client& client) {
    std::string prefix = unique("pat");
    auto before = client.publisher(prefix + ".a");
    auto sub = client.subscriber(prefix + ".>", ringbus::SubscribeOptions().tags(0x1, 0x1));
    auto after = client.publisher(prefix + ".b.c");
    for (std::uint8_t i = 0; i < 4; i++) {
        before.publish(ringbus::bytes_view(&i, 1), i);
        after.publish(ringbus::bytes_view(&i, 1), i);
    }
    std::array<std::uint8_t, 16> buf{};
    std::vector<std::string> names;
    for (int i = 0; i < 4; i++) {
        ringbus_message_info info = sub.recv_for(buf, 10s);
        EXPECT(info.tag % 2 == 1);
        names.push_back(sub.topic_name(info.topic));
    }
    EXPECT(std::count(names.begin(), names.end(), prefix + ".a") == 2);
    EXPECT(std::count(names.begin(), names.end(), prefix + ".b.c") == 2);
    EXPECT(sub.filtered_total() == 4);
    EXPECT_ERROR(RINGBUS_ERR_NOT_FOUND, sub.topic_name(99));
    EXPECT_ERROR(RINGBUS_ERR_INVALID_ARGUMENT, sub.filter_tags(0x1, 0x2));
    EXPECT_ERROR(RINGBUS_ERR_INVALID_ARGUMENT, client.subscriber(prefix + ".>.x"));

    const std::uint64_t tags[] = {2, 3};
    sub.clear_filters();
    sub.filter_tag_set(tags, 2);
    int calls = 0;
    sub.filter(even_first_byte, &calls);
    for (std::uint8_t i = 0; i < 8; i++) before.publish(ringbus::bytes_view(&i, 1), i % 4);
    // Tags 2 and 3 (i = 2, 3, 6, 7) reach the predicate; it keeps 2 and 6.
    EXPECT(sub.recv_for(buf, 10s).tag == 2 && buf[0] == 2);
    EXPECT(sub.recv_for(buf, 10s).tag == 2 && buf[0] == 6);
    ringbus_message_info info{};
    EXPECT(sub.try_recv(buf, info) == RINGBUS_ERR_EMPTY);
    EXPECT(calls == 4);
    EXPECT(sub.filtered_total() == 4 + 6);
}

static void open_errors(ringbus::Client& client) {
    EXPECT_ERROR(RINGBUS_ERR_INVALID_ARGUMENT, client.publisher("bad name"));
    EXPECT_ERROR(RINGBUS_ERR_INVALID_ARGUMENT, client.subscriber(""));
    EXPECT_ERROR(RINGBUS_ERR_INVALID_ARGUMENT, client.publisher("cpp.cap", ringbus::TopicConfig().capacity(3)));
    std::string topic = unique("cfg");
    auto first = client.publisher(topic, ringbus::TopicConfig().capacity(8));
    auto e = EXPECT_ERROR(RINGBUS_ERR_CONFIG_MISMATCH,
                          client.publisher(topic, ringbus::TopicConfig().capacity(16)));
    EXPECT(e && std::string(e->what()).find("capacity=8") != std::string::npos);
    auto joined = client.publisher_existing(topic);
    EXPECT(joined.config().capacity == 8);
    EXPECT_ERROR(RINGBUS_ERR_NO_BROKER, ringbus::Client("/nonexistent/ringbus.sock"));
    EXPECT(!ringbus::Client::try_connect("/nonexistent/ringbus.sock"));
    EXPECT(std::strstr(ringbus::last_error(), "no broker") != nullptr);
}

int main() {
    try {
        ringbus::Client client;  // $RINGBUS_SOCKET
        EXPECT(client);
        round_trip_and_moves(client);
        loans(client);
        loans_of_many(client);
        zero_copy(client);
        receive_errors(client);
        open_errors(client);
        patterns_and_filters(client);
        ringbus::Client moved = std::move(client);
        EXPECT_ERROR(RINGBUS_ERR_NULL_POINTER, client.subscriber("cpp.x"));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "unexpected exception: %s\n", e.what());
        return 1;
    }
    if (failures) {
        std::fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    std::printf("all checks passed\n");
    return 0;
}
