// Receives COUNT test messages from TOPIC and checks that each arrived
// intact and in order. Prints "ready" once subscribed (start a publisher
// then), and a summary at the end.
//
//   subscriber [-z] TOPIC COUNT [MAX_SIZE]
//
// -z: zero-copy receive (the topic must be in back-pressure mode).
// The broker's socket is $RINGBUS_SOCKET or the default path.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common.hpp"
#include "ringbus.hpp"

static void check_message(std::uint64_t expected, const ringbus_message_info& info,
                          ringbus::bytes_view data, std::size_t max) {
    if (info.tag != expected || info.sequence != expected ||
        !example::payload_ok(data, expected, max)) {
        std::fprintf(stderr, "message %llu damaged: tag %llu, sequence %llu, %zu bytes\n",
                     static_cast<unsigned long long>(expected),
                     static_cast<unsigned long long>(info.tag),
                     static_cast<unsigned long long>(info.sequence), info.len);
        std::exit(1);
    }
}

int main(int argc, char** argv) try {
    bool zero_copy = argc > 1 && std::strcmp(argv[1], "-z") == 0;
    if (zero_copy) {
        argv++;
        argc--;
    }
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s [-z] TOPIC COUNT [MAX_SIZE]\n", argv[0]);
        return 2;
    }
    const char* topic = argv[1];
    std::uint64_t count = std::strtoull(argv[2], nullptr, 10);
    std::size_t max = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 1024;
    const auto timeout = std::chrono::seconds(20);

    ringbus::Subscriber sub = ringbus::Client().subscriber(
        topic, ringbus::SubscribeOptions().start_earliest());
    // The subscription outlives the client (it shares the connection).
    std::printf("ready\n");
    std::fflush(stdout);

    std::vector<std::uint8_t> buf(max);
    std::uint64_t bytes = 0, latency_sum = 0, stamped = 0;
    for (std::uint64_t i = 0; i < count; i++) {
        ringbus_message_info info;
        if (zero_copy) {
            ringbus::MessageView msg = sub.recv_ref_for(timeout);
            info = msg.info();
            check_message(i, info, msg.data(), max);
        } else {  // (the view above releases its slot at the end of its block)
            info = sub.recv_for(buf, timeout);
            check_message(i, info, ringbus::bytes_view(buf.data(), info.len), max);
        }
        bytes += info.len;
        std::uint64_t now = ringbus::now_ns();
        if (info.timestamp_ns != 0 && now > info.timestamp_ns) {
            latency_sum += now - info.timestamp_ns;
            stamped++;
        }
    }
    std::printf("received %llu messages (%llu bytes), all intact, mean age %llu ns\n",
                static_cast<unsigned long long>(count), static_cast<unsigned long long>(bytes),
                static_cast<unsigned long long>(stamped ? latency_sum / stamped : 0));
    return 0;
} catch (const ringbus::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
}
