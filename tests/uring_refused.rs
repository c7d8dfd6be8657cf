//! When the kernel refuses `io_uring` (as a container runtime's default
//! seccomp profile does), `percore serve` says so in one sentence that
//! names the fix and exits non-zero at once; it neither panics nor hangs.
//! The refusal is real: the child runs under a seccomp filter that answers
//! EPERM to the three `io_uring` system calls.
#![allow(
    unsafe_code,
    reason = "installing a seccomp filter in the child before exec"
)]
#![allow(
    clippy::cast_possible_truncation,
    reason = "classic BPF opcodes are u16; libc gives them as u32 constants below 0x100"
)]

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

const fn statement(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    }
}

/// Refuses `io_uring_setup`, `io_uring_enter` and `io_uring_register` with
/// EPERM; allows everything else.
fn refuse_io_uring() -> std::io::Result<()> {
    let load = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    let call = |nr: libc::c_long| u32::try_from(nr).unwrap();
    let filter = [
        // seccomp_data: the syscall number at offset 0, the arch at 4.
        statement(load, 4),
        jump(AUDIT_ARCH, 0, 4),
        statement(load, 0),
        jump(call(libc::SYS_io_uring_setup), 3, 0),
        jump(call(libc::SYS_io_uring_enter), 2, 0),
        jump(call(libc::SYS_io_uring_register), 1, 0),
        statement(ret, libc::SECCOMP_RET_ALLOW),
        statement(ret, libc::SECCOMP_RET_ERRNO | libc::EPERM.cast_unsigned()),
    ];
    let program = libc::sock_fprog {
        len: u16::try_from(filter.len()).unwrap(),
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with these arguments only changes this process's
    // seccomp state; `program` and `filter` outlive the call, which copies
    // the program into the kernel.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &raw const program,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[test]
fn refused_io_uring_is_one_sentence_and_a_quick_exit() {
    for io in ["uring", "glommio"] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_percore"));
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--shards",
                "1",
                "--io",
                io,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only
        // makes two prctl calls (async-signal-safe), allocating nothing.
        unsafe { command.pre_exec(refuse_io_uring) };
        let started = Instant::now();
        let mut child = command.spawn().unwrap();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!("percore --io {io} still runs 10 s after io_uring was refused");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let elapsed = started.elapsed();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(1), "--io {io}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "--io {io}: one line, not {stderr}");
        assert!(
            lines[0].starts_with("percore: the kernel refused io_uring (io_uring_setup:")
                && lines[0].contains("seccomp profile"),
            "--io {io}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        eprintln!("--io {io}: exited in {elapsed:?}");
    }
}

#[test]
fn doctor_fails_io_uring_under_the_same_filter() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_percore"));
    command
        .args(["doctor", "--listen", "127.0.0.1:0", "--shards", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: as above: two prctl calls in the child before exec.
    unsafe { command.pre_exec(refuse_io_uring) };
    let output = command.output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("io_uring"))
        .unwrap_or_else(|| panic!("no io_uring line: {text}"));
    assert!(line.starts_with("FAIL io_uring"), "{line}");
    assert!(line.contains("seccomp"), "{line}");
}
