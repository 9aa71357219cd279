/* Consumer groups through the C API, against a live broker
 * ($RINGBUS_SOCKET).
 *
 *   group_test member TOPIC GROUP   a member: prints "ready", then one line
 *                                   "SEQ DELIVERIES" per message (each
 *                                   payload checked: the sequence, 8 bytes
 *                                   little-endian), then "done" at the end
 *                                   of the stream.
 *   group_test contract             the error paths and the explicit
 *                                   acknowledgements; prints "all checks
 *                                   passed" when every check passes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringbus.h"

#include "check.h"

static const int64_t MS = 1000 * 1000;

static uint64_t le64(const unsigned char *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}

static void put_le64(unsigned char *b, uint64_t v) {
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
}

static int member(const char *topic, const char *group) {
    ringbus_client *client = NULL;
    ringbus_subscriber *sub = NULL;
    ringbus_subscribe_options o;
    OK(ringbus_client_connect(NULL, &client));
    OK(ringbus_subscribe_options_init(&o));
    o.group = group;
    o.group_batch = 16;
    OK(ringbus_subscriber_open(client, topic, &o, &sub));
    if (failures) return 1;
    printf("ready\n");
    fflush(stdout);
    unsigned char buf[64];
    for (;;) {
        ringbus_message_info info;
        int rc = ringbus_subscriber_recv(sub, buf, sizeof buf, 60000 * MS, &info);
        if (rc == RINGBUS_ERR_END_OF_STREAM) break;
        if (rc != RINGBUS_OK) {
            fprintf(stderr, "member: %s: %s\n", ringbus_status_name(rc), ringbus_last_error());
            return 2;
        }
        if (info.len != 8 || le64(buf) != info.sequence || info.deliveries < 1) {
            fprintf(stderr, "member: message %llu: len %zu, deliveries %u\n",
                    (unsigned long long)info.sequence, info.len, info.deliveries);
            return 2;
        }
        printf("%llu %u\n", (unsigned long long)info.sequence, info.deliveries);
    }
    printf("done\n");
    OK(ringbus_subscriber_close(sub));
    OK(ringbus_client_close(client));
    return failures ? 1 : 0;
}

static int take_any(const ringbus_message_info *info, const uint8_t *data, size_t len,
                    void *user) {
    (void)info, (void)data, (void)len, (void)user;
    return 1;
}

static int contract(void) {
    ringbus_client *client = NULL;
    ringbus_publisher *pub = NULL;
    ringbus_subscriber *sub = NULL, *other = NULL, *plain = NULL;
    ringbus_topic_config c;
    ringbus_subscribe_options base, o;
    ringbus_message_info info, got[4];
    unsigned char buf[64], msg[8];
    OK(ringbus_client_connect(NULL, &client));
    OK(ringbus_topic_config_init(&c));
    c.mode = RINGBUS_MODE_BACKPRESSURE;
    c.capacity = 4;
    c.max_message_size = 8;
    OK(ringbus_publisher_open(client, "gt.jobs", &c, &pub));
    OK(ringbus_subscribe_options_init(&base));

    /* Bad input: each a clear error. */
    o = base;
    o.group = "";
    EXPECT_STATUS(ringbus_subscriber_open(client, "gt.jobs", &o, &sub),
                  RINGBUS_ERR_INVALID_ARGUMENT, "group name");
    o.group = "a/b";
    EXPECT_STATUS(ringbus_subscriber_open(client, "gt.jobs", &o, &sub),
                  RINGBUS_ERR_INVALID_ARGUMENT, "group name");
    o = base;
    o.group_batch = 4;
    EXPECT_STATUS(ringbus_subscriber_open(client, "gt.jobs", &o, &sub),
                  RINGBUS_ERR_INVALID_ARGUMENT, "options.group");
    o = base;
    o.group = "w";
    o.group_flags = 2;
    EXPECT_STATUS(ringbus_subscriber_open(client, "gt.jobs", &o, &sub), RINGBUS_ERR_UNSUPPORTED,
                  "group_flags");
    o = base;
    o.group = "w";
    o.tag_mask = 1;
    EXPECT_STATUS(ringbus_subscriber_open(client, "gt.jobs", &o, &sub), RINGBUS_ERR_UNSUPPORTED,
                  "no filters");

    /* A member acknowledging explicitly. */
    o = base;
    o.group = "w";
    o.group_flags = RINGBUS_GROUP_MANUAL_ACK;
    o.group_max_deliveries = 3;
    OK(ringbus_subscriber_open(client, "gt.jobs", &o, &sub));
    /* Every member must agree on max_deliveries. */
    o.group_max_deliveries = 4;
    EXPECT_STATUS(ringbus_subscriber_open(client, "gt.jobs", &o, &other),
                  RINGBUS_ERR_CONFIG_MISMATCH, "max_deliveries");
    /* No zero-copy receive, no filters for a member. */
    ringbus_message_view view;
    EXPECT_STATUS(ringbus_subscriber_recv_ref(sub, 0, &view), RINGBUS_ERR_UNSUPPORTED,
                  "group member");
    EXPECT_STATUS(ringbus_subscriber_filter_tags(sub, 1, 1), RINGBUS_ERR_UNSUPPORTED,
                  "group member");
    /* Nor batch receives: each message is acknowledged on its own. */
    EXPECT_STATUS(ringbus_subscriber_try_recv_batch(sub, buf, sizeof buf, 4, take_any, NULL, NULL,
                                                    NULL),
                  RINGBUS_ERR_UNSUPPORTED, "one message at a time");
    /* Acknowledgements are for members. */
    OK(ringbus_subscriber_open(client, "gt.jobs", &base, &plain));
    memset(&info, 0, sizeof info);
    EXPECT_STATUS(ringbus_subscriber_ack(plain, &info), RINGBUS_ERR_BAD_STATE,
                  "not a consumer group member");
    EXPECT_STATUS(ringbus_subscriber_ack(sub, NULL), RINGBUS_ERR_NULL_POINTER, "info");
    OK(ringbus_subscriber_close(plain));

    for (uint64_t i = 0; i < 4; i++) {
        put_le64(msg, i);
        OK(ringbus_publisher_try_publish(pub, msg, 8, i, NULL));
    }
    put_le64(msg, 4);
    EXPECT_STATUS(ringbus_publisher_try_publish(pub, msg, 8, 4, NULL), RINGBUS_ERR_FULL, "");
    for (int i = 0; i < 4; i++) {
        OK(ringbus_subscriber_recv(sub, buf, sizeof buf, 5000 * MS, &got[i]));
        EXPECT(got[i].sequence == (uint64_t)i);
        EXPECT(le64(buf) == (uint64_t)i);
        EXPECT(got[i].deliveries == 1);
    }
    /* Received, not acknowledged: the ring stays full. */
    EXPECT_STATUS(ringbus_publisher_try_publish(pub, msg, 8, 4, NULL), RINGBUS_ERR_FULL, "");
    /* Not held: never delivered, or acknowledged already. */
    info = got[0];
    info.sequence = 77;
    EXPECT_STATUS(ringbus_subscriber_ack(sub, &info), RINGBUS_ERR_INVALID_ARGUMENT, "not held");
    OK(ringbus_subscriber_ack(sub, &got[1]));
    EXPECT_STATUS(ringbus_subscriber_ack(sub, &got[1]), RINGBUS_ERR_INVALID_ARGUMENT,
                  "not held");
    /* 0 handed back: delivered again, its count one higher. */
    OK(ringbus_subscriber_nack(sub, &got[0]));
    OK(ringbus_subscriber_recv(sub, buf, sizeof buf, 5000 * MS, &info));
    EXPECT(info.sequence == 0 && info.deliveries == 2);
    /* Everything acknowledged: the publisher has the ring again. */
    OK(ringbus_subscriber_ack_through(sub, &got[3]));
    OK(ringbus_publisher_try_publish(pub, msg, 8, 4, NULL));
    OK(ringbus_subscriber_recv(sub, buf, sizeof buf, 5000 * MS, &info));
    EXPECT(info.sequence == 4 && info.deliveries == 1);
    OK(ringbus_subscriber_ack(sub, &info));

    OK(ringbus_subscriber_close(sub));
    OK(ringbus_publisher_close(pub));
    OK(ringbus_client_close(client));
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "member") == 0) return member(argv[2], argv[3]);
    if (argc == 2 && strcmp(argv[1], "contract") == 0) return contract();
    fprintf(stderr, "usage: group_test member TOPIC GROUP | group_test contract\n");
    return 2;
}
