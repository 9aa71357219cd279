/* Replay that merges into live, from C: against a broker ($RINGBUS_SOCKET)
 * whose topic "cj.feed" is durable (journaled) with a 16-message ring and
 * "cj.plain" is not. 2 000 messages are published before anyone
 * subscribes; a subscriber from sequence 0 (RINGBUS_START_SEQUENCE) and
 * one from a time (RINGBUS_START_TIME) get every one of them, in order,
 * from the journal, then live ones from the ring; a time on a topic
 * without a journal, or on a pattern, is refused clearly. Exits 0 when
 * every check passes; prints each failure. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ringbus.h"

#include "check.h"

static const int64_t MS = 1000 * 1000;
enum { BEFORE = 2000, AFTER = 100 };

/* Receives sequence numbers first..last-1 in order, payload = sequence. */
static void receive_run(ringbus_subscriber *sub, uint64_t first, uint64_t last) {
    for (uint64_t want = first; want < last; want++) {
        uint64_t v = 0;
        ringbus_message_info info;
        int rc = ringbus_subscriber_recv(sub, &v, sizeof v, 20000 * MS, &info);
        if (rc != RINGBUS_OK) {
            fprintf(stderr, "receiving %llu: %s (%s)\n", (unsigned long long)want,
                    ringbus_status_name(rc), ringbus_last_error());
            failures++;
            return;
        }
        if (info.sequence != want || v != want || info.len != sizeof v) {
            fprintf(stderr, "got seq %llu payload %llu, expected %llu\n",
                    (unsigned long long)info.sequence, (unsigned long long)v,
                    (unsigned long long)want);
            failures++;
            return;
        }
    }
}

int main(void) {
    ringbus_client *client = NULL;
    OK(ringbus_client_connect(NULL, &client));
    ringbus_publisher *pub = NULL;
    OK(ringbus_publisher_open_existing(client, "cj.feed", &pub));
    if (failures) return 1;
    for (uint64_t i = 0; i < BEFORE; i++) OK(ringbus_publisher_publish(pub, &i, sizeof i, 0, NULL));

    ringbus_subscribe_options o;
    OK(ringbus_subscribe_options_init(&o));
    o.start = RINGBUS_START_SEQUENCE;
    o.start_sequence = 0;
    ringbus_subscriber *from_zero = NULL;
    OK(ringbus_subscriber_open(client, "cj.feed", &o, &from_zero));

    o.start = RINGBUS_START_TIME;
    o.start_sequence = 1; /* 1 ns after the epoch: everything journaled */
    ringbus_subscriber *from_time = NULL;
    OK(ringbus_subscriber_open(client, "cj.feed", &o, &from_time));
    if (failures) return 1;

    receive_run(from_zero, 0, BEFORE);
    receive_run(from_time, 0, BEFORE);
    for (uint64_t i = BEFORE; i < BEFORE + AFTER; i++)
        OK(ringbus_publisher_publish(pub, &i, sizeof i, 0, NULL));
    receive_run(from_zero, BEFORE, BEFORE + AFTER);
    receive_run(from_time, BEFORE, BEFORE + AFTER);

    /* A time needs a durable topic, and a topic rather than a pattern. */
    ringbus_subscriber *bad = NULL;
    EXPECT_STATUS(ringbus_subscriber_open(client, "cj.plain", &o, &bad), RINGBUS_ERR_NOT_FOUND, "");
    EXPECT(strstr(ringbus_last_error(), "not durable") != NULL);
    o.pattern = "cj.>";
    EXPECT_STATUS(ringbus_subscriber_open(client, NULL, &o, &bad), RINGBUS_ERR_INVALID_ARGUMENT, "");
    EXPECT(strstr(ringbus_last_error(), "durable topic") != NULL);
    o.pattern = NULL;
    o.start = 4;
    EXPECT_STATUS(ringbus_subscriber_open(client, "cj.feed", &o, &bad), RINGBUS_ERR_INVALID_ARGUMENT, "");

    ringbus_subscriber_close(from_zero);
    ringbus_subscriber_close(from_time);
    ringbus_publisher_close(pub);
    ringbus_client_close(client);
    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
