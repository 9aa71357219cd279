// Publishes COUNT test messages to TOPIC (back-pressure mode, so none is
// lost), alternating a zero-copy loan and a copying publish.
//
//   publisher TOPIC COUNT [MAX_SIZE]
//
// The broker's socket is $RINGBUS_SOCKET or the default path.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "common.hpp"
#include "ringbus.hpp"

int main(int argc, char** argv) try {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s TOPIC COUNT [MAX_SIZE]\n", argv[0]);
        return 2;
    }
    const char* topic = argv[1];
    std::uint64_t count = std::strtoull(argv[2], nullptr, 10);
    std::size_t max = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 1024;

    ringbus::Client client;
    auto pub = client.publisher(topic, ringbus::TopicConfig()
                                           .mode(ringbus::Mode::Backpressure)
                                           .max_message_size(static_cast<std::uint32_t>(max))
                                           .capacity(256));
    pub.set_timestamps(true);  // so the subscriber can report their age

    std::vector<std::uint8_t> scratch(max);
    for (std::uint64_t i = 0; i < count; i++) {
        std::size_t len = example::payload_len(i, max);
        std::uint64_t seq;
        if (i % 2 == 0) {
            // Zero-copy: write the payload straight into the ring's slot.
            ringbus::Loan loan = pub.loan(len);
            example::payload_fill(loan.data(), i);
            seq = loan.commit(/* tag */ i);
        } else {
            ringbus::mutable_bytes_view buf(scratch.data(), len);
            example::payload_fill(buf, i);
            seq = pub.publish(buf, /* tag */ i);
        }
        if (seq != i) {
            std::fprintf(stderr, "message %llu got sequence %llu\n",
                         static_cast<unsigned long long>(i), static_cast<unsigned long long>(seq));
            return 1;
        }
    }
    std::printf("published %llu messages to %s\n", static_cast<unsigned long long>(count), topic);
    // Destroying the publisher ends its stream: subscribers drain the ring,
    // then see RINGBUS_ERR_END_OF_STREAM.
    return 0;
} catch (const ringbus::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
}
