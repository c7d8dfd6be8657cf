//! The request decoder: any bytes, whole or split at two points chosen by
//! the input, give the same requests and the same verdict, without panicking.
#![no_main]

mod limits;

use libfuzzer_sys::fuzz_target;
use limits::limits;
use percore::internals::{Decoded, Decoder, ParseError};

/// Requests as owned values: (method token, target, headers, body).
type Seen = Vec<(Vec<u8>, Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>, Vec<u8>)>;


/// Decodes `input` fed in the pieces cut at `cuts` (ascending).
fn run(input: &[u8], cuts: &[usize]) -> (Seen, Option<ParseError>) {
    let mut decoder = Decoder::new(limits());
    let mut buf = Vec::new();
    let mut start = 0;
    let mut seen = Seen::new();
    let mut edges = cuts.iter().copied().chain(std::iter::once(input.len()));
    let mut fed = 0;
    loop {
        match decoder.decode(&mut buf[start..]) {
            Ok(Decoded::Complete(message)) => {
                let bytes = &buf[start..];
                seen.push((
                    message.head.method_token.get(bytes).to_vec(),
                    message.head.target.get(bytes).to_vec(),
                    decoder
                        .headers()
                        .iter()
                        .map(|h| (h.name.get(bytes).to_vec(), h.value.get(bytes).to_vec()))
                        .collect(),
                    bytes[message.body_range()].to_vec(),
                ));
                assert!(message.consumed > 0 && message.consumed <= bytes.len());
                start += message.consumed;
            }
            Ok(Decoded::Partial) => match edges.next() {
                Some(edge) => {
                    buf.extend_from_slice(&input[fed..edge]);
                    fed = edge;
                }
                None => return (seen, None),
            },
            Err(error) => return (seen, Some(error)),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (a, b) = (usize::from(data[0]), usize::from(data[1]));
    let input = &data[2..];
    let mut cuts = [a * input.len() / 256, b * input.len() / 256];
    cuts.sort_unstable();
    assert_eq!(run(input, &[]), run(input, &cuts), "split at {cuts:?}");
});
