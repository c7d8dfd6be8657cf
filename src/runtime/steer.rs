//! Steering: a classic BPF program on each address's reuseport group picks
//! the listening socket (so the shard) from a hash of the client's source
//! address, so every connection of one client lands on one shard and that
//! shard's rate limiter and connection cap see all of them.
//!
//! The sockets of a group are created in shard order, so socket `i` of the
//! group is shard `i`'s. The program reads the IP header through
//! `SKF_NET_OFF` (in this program type plain offsets start at the TCP
//! header): the IPv4 source address, or for IPv6 the leading `prefix` bits
//! of the source (the rate limiter's IPv6 key), `XOR`ed into one word; then
//! `((word × 0x9E3779B1) >> 16) mod shards`. [`shard_of`] computes the same
//! in user space.
#![allow(unsafe_code, reason = "setsockopt with a BPF program")]

use std::net::{IpAddr, TcpListener};
use std::os::fd::AsRawFd;

use libc::sock_filter;

const MULTIPLIER: u32 = 0x9E37_79B1;

// Classic BPF opcodes (linux/bpf_common.h): class | size or operation | mode.
const LD_W_ABS: u16 = 0x20;
const LD_B_ABS: u16 = 0x10 | 0x20;
const ALU_RSH_K: u16 = 0x04 | 0x70;
const ALU_MUL_K: u16 = 0x04 | 0x20;
const ALU_MOD_K: u16 = 0x04 | 0x90;
const ALU_AND_K: u16 = 0x04 | 0x50;
const ALU_XOR_X: u16 = 0x04 | 0xa0 | 0x08;
const JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA (0)
const JMP_JEQ_K: u16 = 0x05 | 0x10;
const MISC_TAX: u16 = 0x07; // BPF_MISC | BPF_TAX (0)
const RET_A: u16 = 0x06 | 0x10;

fn op(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// `SKF_NET_OFF + offset`: a load relative to the network header.
#[allow(clippy::cast_sign_loss, reason = "BPF takes the negative base as bits")]
fn net(offset: u32) -> u32 {
    (libc::SKF_NET_OFF as u32).wrapping_add(offset)
}

/// The IPv6 source words a key of `prefix` bits reads, with the mask of
/// the last one.
fn v6_words(prefix: u8) -> (u32, u32) {
    let prefix = u32::from(prefix.clamp(1, 128));
    let words = prefix.div_ceil(32);
    let rest = prefix - (words - 1) * 32;
    let mask = if rest == 32 {
        u32::MAX
    } else {
        u32::MAX << (32 - rest)
    };
    (words, mask)
}

/// The program for a group of `shards` sockets.
fn program(shards: u32, v6_prefix: u8) -> Vec<sock_filter> {
    let (words, mask) = v6_words(v6_prefix);
    let mut v6 = Vec::new();
    for word in 0..words {
        v6.push(op(LD_W_ABS, net(8 + 4 * word)));
        if word == words - 1 && mask != u32::MAX {
            v6.push(op(ALU_AND_K, mask));
        }
        if word > 0 {
            v6.push(op(ALU_XOR_X, 0));
        }
        if word < words - 1 {
            v6.push(op(MISC_TAX, 0));
        }
    }
    let mut code = vec![
        op(LD_B_ABS, net(0)),
        op(ALU_RSH_K, 4),
        // Version 4: the next two instructions; else skip them.
        sock_filter {
            code: JMP_JEQ_K,
            jt: 0,
            jf: 2,
            k: 4,
        },
        op(LD_W_ABS, net(12)),
        op(JMP_JA, u32::try_from(v6.len()).unwrap_or(0)),
    ];
    code.extend(v6);
    code.extend([
        op(ALU_MUL_K, MULTIPLIER),
        op(ALU_RSH_K, 16),
        op(ALU_MOD_K, shards.max(1)),
        op(RET_A, 0),
    ]);
    code
}

/// The shard the program sends `ip` to, of `shards`.
#[must_use]
pub fn shard_of(ip: IpAddr, shards: usize, v6_prefix: u8) -> usize {
    let word = match ip {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(v6) => {
            let (words, mask) = v6_words(v6_prefix);
            let octets = v6.octets();
            (0..words).fold(0, |acc, i| {
                let at = 4 * i as usize;
                let mut word = u32::from_be_bytes([
                    octets[at],
                    octets[at + 1],
                    octets[at + 2],
                    octets[at + 3],
                ]);
                if i == words - 1 {
                    word &= mask;
                }
                acc ^ word
            })
        }
    };
    let hashed = word.wrapping_mul(MULTIPLIER) >> 16;
    hashed as usize % shards.max(1)
}

/// Attaches the program to the group `listener` belongs to.
pub(crate) fn attach(listener: &TcpListener, shards: usize, v6_prefix: u8) -> std::io::Result<()> {
    let code = program(u32::try_from(shards).unwrap_or(u32::MAX), v6_prefix);
    let fprog = libc::sock_fprog {
        len: u16::try_from(code.len()).unwrap_or(u16::MAX),
        filter: code.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `code`, which outlives the call; the kernel
    // copies the program.
    let result = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            std::ptr::from_ref(&fprog).cast(),
            u32::try_from(std::mem::size_of::<libc::sock_fprog>()).unwrap_or(0),
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_has_its_shape() {
        // IPv4 path + /64 IPv6 (two words, XORed) + hash.
        let code = program(2, 64);
        assert_eq!(code.len(), 5 + 4 + 4);
        assert_eq!(code[4].k, 4, "the IPv4 path jumps over the IPv6 words");
        let partial = program(4, 56);
        assert!(
            partial
                .iter()
                .any(|i| i.code == ALU_AND_K && i.k == 0xFFFF_FF00)
        );
    }

    #[test]
    fn user_space_mirror_spreads_and_respects_the_prefix() {
        let mut seen = [0; 2];
        for last in 2..66u8 {
            seen[shard_of(IpAddr::from([127, 0, 0, last]), 2, 64)] += 1;
        }
        assert!(seen[0] > 10 && seen[1] > 10, "{seen:?}");
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        for shards in 2..8 {
            assert_eq!(shard_of(a, shards, 64), shard_of(b, shards, 64));
        }
    }
}
