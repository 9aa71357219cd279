//! The `frame_decoder` target: arbitrary bytes into both decoders.

use ringbus::control::codec::{decode_reply, decode_request, encode_reply, encode_request};
use ringbus::control::frame::{Reply, Request, MAX_FDS};

/// Decodes `data` as a request and as a reply. Panics if a decoder panics,
/// if a decoded frame does not encode back to the same bytes (the encoding
/// is canonical, so value and byte round trips coincide), or if the error
/// reply the broker would answer a rejected frame with cannot be encoded.
pub fn check(data: &[u8]) {
    match decode_request(data) {
        Ok(req) => {
            let bytes = encode_request(&req)
                .unwrap_or_else(|e| panic!("decoded request {req:?} does not encode: {e}"));
            assert_eq!(bytes, data, "re-encoding {req:?} changed its bytes");
            assert_eq!(decode_request(&bytes).as_ref(), Ok(&req));
            // The broker checks a decoded config next.
            if let Request::OpenTopic { config, .. }
            | Request::AttachPublisher {
                config: Some(config),
                ..
            } = req
            {
                let _ = config.validate();
            }
        }
        Err(e) => {
            // What `Broker::serve_client` answers a frame it cannot decode.
            let reply = Reply::error(e.code(), e.to_string());
            if let Err(err) = encode_reply(&reply) {
                panic!("the error reply to {e:?} does not encode: {err}");
            }
        }
    }
    if let Ok(reply) = decode_reply(data) {
        let bytes = encode_reply(&reply)
            .unwrap_or_else(|e| panic!("decoded reply {reply:?} does not encode: {e}"));
        assert_eq!(bytes, data, "re-encoding {reply:?} changed its bytes");
        assert_eq!(decode_reply(&bytes).as_ref(), Ok(&reply));
        // A client trusts this count to size its descriptor buffer.
        assert!(
            reply.fd_count() <= MAX_FDS,
            "{reply:?} announces too many fds"
        );
    }
}
