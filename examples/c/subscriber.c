/* Receives COUNT test messages from TOPIC and checks that each arrived
 * intact and in order. Prints "ready" once subscribed (start a publisher
 * then), and a summary at the end.
 *
 *   subscriber [-z] TOPIC COUNT [MAX_SIZE]
 *
 * -z: zero-copy receive (the topic must be in back-pressure mode).
 * The broker's socket is $RINGBUS_SOCKET or the default path. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ringbus.h"

static const int64_t TIMEOUT_NS = 20LL * 1000 * 1000 * 1000;

static void check_message(uint64_t expected, const ringbus_message_info *info,
                          const uint8_t *data, size_t max) {
    if (info->tag != expected || info->sequence != expected ||
        !payload_ok(data, expected, info->len, max)) {
        fprintf(stderr,
                "message %llu damaged: tag %llu, sequence %llu, %zu bytes (expected %zu)\n",
                (unsigned long long)expected, (unsigned long long)info->tag,
                (unsigned long long)info->sequence, info->len, payload_len(expected, max));
        exit(1);
    }
}

int main(int argc, char **argv) {
    int zero_copy = argc > 1 && strcmp(argv[1], "-z") == 0;
    if (zero_copy) {
        argv++;
        argc--;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: %s [-z] TOPIC COUNT [MAX_SIZE]\n", argv[0]);
        return 2;
    }
    const char *topic = argv[1];
    uint64_t count = strtoull(argv[2], NULL, 10);
    size_t max = argc > 3 ? (size_t)strtoul(argv[3], NULL, 10) : 1024;

    ringbus_client *client;
    CHECK(ringbus_client_connect(NULL, &client));
    ringbus_subscribe_options options;
    CHECK(ringbus_subscribe_options_init(&options));
    options.start = RINGBUS_START_EARLIEST;
    ringbus_subscriber *sub;
    CHECK(ringbus_subscriber_open(client, topic, &options, &sub));
    /* The subscription outlives the client handle (it shares the connection). */
    CHECK(ringbus_client_close(client));
    printf("ready\n");
    fflush(stdout);

    uint8_t *buf = malloc(max ? max : 1);
    if (!buf) return 1;
    uint64_t bytes = 0;
    uint64_t latency_sum = 0, stamped = 0;
    for (uint64_t i = 0; i < count; i++) {
        ringbus_message_info info;
        int rc;
        if (zero_copy) {
            ringbus_message_view view;
            rc = ringbus_subscriber_recv_ref(sub, TIMEOUT_NS, &view);
            if (rc == RINGBUS_OK) {
                info = view.info;
                check_message(i, &info, view.data, max);
                CHECK(ringbus_subscriber_release(sub));
            }
        } else {
            rc = ringbus_subscriber_recv(sub, buf, max, TIMEOUT_NS, &info);
            if (rc == RINGBUS_OK) check_message(i, &info, buf, max);
        }
        if (rc != RINGBUS_OK) {
            fprintf(stderr, "after %llu messages: %s: %s\n", (unsigned long long)i,
                    ringbus_status_name(rc), ringbus_last_error());
            return 1;
        }
        bytes += info.len;
        uint64_t now = ringbus_now_ns();
        // 0: the publisher did not stamp the message (timestamps are off by
        // default).
        if (info.timestamp_ns != 0 && now > info.timestamp_ns) {
            latency_sum += now - info.timestamp_ns;
            stamped++;
        }
    }
    free(buf);
    printf("received %llu messages (%llu bytes), all intact, mean age %llu ns\n",
           (unsigned long long)count, (unsigned long long)bytes,
           (unsigned long long)(stamped ? latency_sum / stamped : 0));
    CHECK(ringbus_subscriber_close(sub));
    return 0;
}
