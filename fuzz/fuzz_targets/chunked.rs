//! The chunked-body decoder: any bytes, whole or fed one split at a time,
//! give the same body and verdict; the decoded body never outgrows the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore::internals::{ChunkLimits, ChunkedDecoder};

fn run(input: &[u8], cuts: &[usize]) -> Result<Option<(Vec<u8>, usize)>, percore::internals::ParseError> {
    let mut decoder = ChunkedDecoder::new(0);
    let mut buf = Vec::new();
    let mut fed = 0;
    for edge in cuts.iter().copied().chain(std::iter::once(input.len())) {
        buf.extend_from_slice(&input[fed..edge]);
        fed = edge;
        if decoder.decode(
            &mut buf,
            ChunkLimits {
                max_body: 1 << 16,
                max_trailer: 1024,
                max_trailer_fields: 16,
                max_extension: 256,
            },
        )? {
            assert!(decoder.body_end() <= decoder.consumed());
            return Ok(Some((buf[..decoder.body_end()].to_vec(), decoder.consumed())));
        }
    }
    Ok(None)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let input = &data[3..];
    let mut cuts: Vec<usize> = data[..3].iter().map(|&c| usize::from(c) * input.len() / 256).collect();
    cuts.sort_unstable();
    assert_eq!(run(input, &[]), run(input, &cuts), "split at {cuts:?}");
});
