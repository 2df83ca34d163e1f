//! What an application's backend answers the proxies, and the server
//! API's bodies: any bytes read as each proxy's answer and as each API
//! body, without a panic; what reads as an answer holds the promised
//! bounds (application codes, close codes, reason and message sizes),
//! and data read from `data_base64` is what it said.

#![no_main]

use ferrows_hub::protocol::proxy::{
    ConnectResult, MAX_CLOSE_REASON, MAX_ERROR_MESSAGE, ProxyAnswer, ProxyResult, PublishResult, RefreshResult,
    RpcAnswer, SubscribeResult,
};
use ferrows_hub::protocol::{
    APPLICATION_CODES, ApiBatch, ApiChannel, ApiChannels, ApiDisconnect, ApiPublish, ApiUserChannel, Encoding, Error,
    close,
};
use libfuzzer_sys::fuzz_target;

fn check<R: ProxyResult>(input: &[u8]) -> Option<R> {
    match ProxyAnswer::<R>::read(input).ok()? {
        ProxyAnswer::Result(result) => Some(result),
        ProxyAnswer::Error(Error::Application { code, message, .. }) => {
            assert!(APPLICATION_CODES.contains(&code));
            assert!(message.len() <= MAX_ERROR_MESSAGE);
            None
        }
        ProxyAnswer::Error(other) => panic!("a backend's error is the application's: {other:?}"),
        ProxyAnswer::Disconnect { code, reason } => {
            assert!(close::APPLICATION.contains(&code));
            assert!(reason.len() <= MAX_CLOSE_REASON);
            None
        }
    }
}

fuzz_target!(|input: &[u8]| {
    if let Some(connect) = check::<ConnectResult>(input) {
        // Data the client gets encodes in both encodings (as JSON or
        // data_base64; as bytes).
        if let Some(data) = connect.data {
            let reply = ferrows_hub::protocol::Connected {
                client: "c".into(),
                user: connect.user,
                ping: 25,
                expires: connect.expire_at,
                data: Some(data),
            };
            for encoding in Encoding::ALL {
                let bytes = encoding.encode(&reply);
                let back: ferrows_hub::protocol::Connected = encoding.decode(&bytes).expect("reads back");
                assert_eq!(back, reply);
            }
        }
    }
    let _ = check::<RefreshResult>(input);
    let _ = check::<SubscribeResult>(input);
    let _ = check::<PublishResult>(input);
    if let Some(RpcAnswer { data: Some(data) }) = check::<RpcAnswer>(input) {
        let result = ferrows_hub::protocol::RpcResult { data };
        for encoding in Encoding::ALL {
            let back: ferrows_hub::protocol::RpcResult =
                encoding.decode(&encoding.encode(&result)).expect("reads back");
            assert_eq!(back, result);
        }
    }
    let json = Encoding::Json;
    let _ = json.decode::<ApiPublish>(input);
    let _ = json.decode::<ApiBatch>(input);
    let _ = json.decode::<ApiUserChannel>(input);
    let _ = json.decode::<ApiDisconnect>(input);
    let _ = json.decode::<ApiChannel>(input);
    let _ = json.decode::<ApiChannels>(input);
});
