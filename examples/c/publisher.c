/* Publishes COUNT test messages to TOPIC (back-pressure mode, so none is
 * lost), alternating zero-copy loan + commit and copying publish.
 *
 *   publisher TOPIC COUNT [MAX_SIZE]
 *
 * The broker's socket is $RINGBUS_SOCKET or the default path. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "ringbus.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s TOPIC COUNT [MAX_SIZE]\n", argv[0]);
        return 2;
    }
    const char *topic = argv[1];
    uint64_t count = strtoull(argv[2], NULL, 10);
    size_t max = argc > 3 ? (size_t)strtoul(argv[3], NULL, 10) : 1024;

    ringbus_client *client;
    CHECK(ringbus_client_connect(NULL, &client));

    ringbus_topic_config config;
    CHECK(ringbus_topic_config_init(&config));
    config.mode = RINGBUS_MODE_BACKPRESSURE;
    config.max_message_size = (uint32_t)max;
    config.capacity = 256;
    ringbus_publisher *pub;
    CHECK(ringbus_publisher_open(client, topic, &config, &pub));
    // Stamp messages (off by default) so the subscriber can report their age.
    CHECK(ringbus_publisher_set_timestamps(pub, 1));

    uint8_t *scratch = malloc(max ? max : 1);
    if (!scratch) return 1;
    for (uint64_t i = 0; i < count; i++) {
        size_t len = payload_len(i, max);
        uint64_t seq;
        if (i % 2 == 0) {
            /* Zero-copy: write the payload straight into the ring's slot. */
            void *slot;
            CHECK(ringbus_publisher_loan(pub, len, &slot));
            payload_fill(slot, i, len);
            CHECK(ringbus_publisher_commit(pub, len, /* tag */ i, &seq));
        } else {
            payload_fill(scratch, i, len);
            CHECK(ringbus_publisher_publish(pub, scratch, len, /* tag */ i, &seq));
        }
        if (seq != i) {
            fprintf(stderr, "message %llu got sequence %llu\n", (unsigned long long)i,
                    (unsigned long long)seq);
            return 1;
        }
    }
    free(scratch);
    printf("published %llu messages to %s\n", (unsigned long long)count, topic);

    /* Subscribers drain the ring, then see RINGBUS_ERR_END_OF_STREAM. */
    CHECK(ringbus_publisher_close(pub));
    CHECK(ringbus_client_close(client));
    return 0;
}
