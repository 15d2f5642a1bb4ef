//! The write guard's seccomp filter: a classic BPF program that hands the system calls that can
//! write to a path to the supervisor (`SECCOMP_RET_USER_NOTIF`) and lets everything else
//! through. `open`/`openat` are handed over only when their flags ask for writing, so reads
//! cost nothing.

/// What a call does to a path, which decides when it cannot write anything: creating what
/// exists fails with `EEXIST`, removing or changing what does not exist fails with `ENOENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Creates the path (mkdir, mknod, link, symlink): a no-op when it exists.
    Create,
    /// Changes or removes what is there (unlink, rmdir, truncate, a rename's source): a no-op
    /// when nothing is there.
    Change,
    /// Writes, creating it when the flags say so (open, creat, a rename's target).
    Write,
}

/// Where a system call names a path it writes.
#[derive(Debug, Clone, Copy)]
pub struct PathArg {
    /// The argument holding the directory descriptor the path is relative to (`*at` calls);
    /// `None`: the current directory.
    pub dirfd: Option<usize>,
    /// The argument holding the path.
    pub path: usize,
    /// Whether the kernel follows a symbolic link in the last component (open, truncate).
    pub follow: bool,
    pub effect: Effect,
}

/// A guarded system call.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub nr: i64,
    pub name: &'static str,
    pub paths: &'static [PathArg],
    /// The argument with `open` flags: handed over only when they ask for writing.
    pub flags: Option<usize>,
    /// `openat2`: the flags are in the `open_how` struct the argument points to.
    pub how: Option<usize>,
}

const fn at(dirfd: usize, path: usize) -> PathArg {
    PathArg {
        dirfd: Some(dirfd),
        path,
        follow: false,
        effect: Effect::Write,
    }
}

const fn cwd(path: usize) -> PathArg {
    PathArg {
        dirfd: None,
        path,
        follow: false,
        effect: Effect::Write,
    }
}

const fn follow(p: PathArg) -> PathArg {
    PathArg { follow: true, ..p }
}

const fn create(p: PathArg) -> PathArg {
    PathArg {
        effect: Effect::Create,
        ..p
    }
}

const fn change(p: PathArg) -> PathArg {
    PathArg {
        effect: Effect::Change,
        ..p
    }
}

const fn call(nr: i64, name: &'static str, paths: &'static [PathArg]) -> Call {
    Call {
        nr,
        name,
        paths,
        flags: None,
        how: None,
    }
}

/// The open flags that make an open a write.
pub const WRITE_FLAGS: u32 = (libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC) as u32;

#[cfg(target_arch = "x86_64")]
pub const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
pub const AUDIT_ARCH: u32 = 0xC000_00B7;

/// The guarded calls of this architecture.
pub fn calls() -> &'static [Call] {
    use libc::*;
    const OPENAT: Call = Call {
        flags: Some(2),
        ..call(SYS_openat, "openat", &[follow(at(0, 1))])
    };
    const OPENAT2: Call = Call {
        how: Some(2),
        ..call(SYS_openat2, "openat2", &[follow(at(0, 1))])
    };
    #[cfg(target_arch = "x86_64")]
    {
        const CALLS: &[Call] = &[
            Call {
                flags: Some(1),
                ..call(SYS_open, "open", &[follow(cwd(0))])
            },
            OPENAT,
            OPENAT2,
            call(SYS_creat, "creat", &[follow(cwd(0))]),
            call(SYS_truncate, "truncate", &[change(follow(cwd(0)))]),
            call(SYS_rename, "rename", &[change(cwd(0)), cwd(1)]),
            call(SYS_renameat, "renameat", &[change(at(0, 1)), at(2, 3)]),
            call(SYS_renameat2, "renameat2", &[change(at(0, 1)), at(2, 3)]),
            call(SYS_unlink, "unlink", &[change(cwd(0))]),
            call(SYS_unlinkat, "unlinkat", &[change(at(0, 1))]),
            call(SYS_rmdir, "rmdir", &[change(cwd(0))]),
            call(SYS_mkdir, "mkdir", &[create(cwd(0))]),
            call(SYS_mkdirat, "mkdirat", &[create(at(0, 1))]),
            call(SYS_mknod, "mknod", &[create(cwd(0))]),
            call(SYS_mknodat, "mknodat", &[create(at(0, 1))]),
            call(SYS_link, "link", &[create(cwd(1))]),
            call(SYS_linkat, "linkat", &[create(at(2, 3))]),
            call(SYS_symlink, "symlink", &[create(cwd(1))]),
            call(SYS_symlinkat, "symlinkat", &[create(at(1, 2))]),
        ];
        CALLS
    }
    #[cfg(target_arch = "aarch64")]
    {
        const CALLS: &[Call] = &[
            OPENAT,
            OPENAT2,
            call(SYS_truncate, "truncate", &[change(follow(cwd(0)))]),
            call(SYS_renameat, "renameat", &[change(at(0, 1)), at(2, 3)]),
            call(SYS_renameat2, "renameat2", &[change(at(0, 1)), at(2, 3)]),
            call(SYS_unlinkat, "unlinkat", &[change(at(0, 1))]),
            call(SYS_mkdirat, "mkdirat", &[create(at(0, 1))]),
            call(SYS_mknodat, "mknodat", &[create(at(0, 1))]),
            call(SYS_linkat, "linkat", &[create(at(2, 3))]),
            call(SYS_symlinkat, "symlinkat", &[create(at(1, 2))]),
        ];
        CALLS
    }
}

pub fn find(nr: i64) -> Option<&'static Call> {
    calls().iter().find(|c| c.nr == nr)
}

/// One BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_NOTIFY: u32 = libc::SECCOMP_RET_USER_NOTIF;

/// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
fn arg_low(i: usize) -> u32 {
    // args[i], its low 32 bits (both architectures are little-endian).
    16 + 8 * i as u32
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    Allow,
    Notify,
    Flags(usize),
}

enum Op {
    Ins(Insn),
    /// Jump to the label when the accumulator equals k, else fall through.
    JeqTo(u32, Label),
    /// Jump to `Label` when accumulator >= k.
    JgeTo(u32, Label),
    /// Jump to the first label when accumulator & k != 0, else to the second.
    JsetTo(u32, Label, Label),
    Mark(Label),
}

fn ins(code: u16, k: u32) -> Op {
    Op::Ins(Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    })
}

/// The filter program.
pub fn program() -> Vec<Insn> {
    let calls = calls();
    let mut ops = vec![
        ins(LD_W_ABS, ARCH),
        // Another architecture's calls (a 32-bit binary) pass unguarded.
        Op::Ins(Insn {
            code: JEQ_K,
            jt: 1,
            jf: 0,
            k: AUDIT_ARCH,
        }),
        ins(RET_K, RET_ALLOW),
        ins(LD_W_ABS, NR),
    ];
    #[cfg(target_arch = "x86_64")]
    ops.push(Op::JgeTo(0x4000_0000, Label::Allow)); // the x32 ABI
    for (i, c) in calls.iter().enumerate() {
        let to = if c.flags.is_some() {
            Label::Flags(i)
        } else {
            Label::Notify
        };
        ops.push(Op::JeqTo(c.nr as u32, to));
    }
    ops.push(ins(RET_K, RET_ALLOW));
    for (i, c) in calls.iter().enumerate() {
        if let Some(a) = c.flags {
            ops.push(Op::Mark(Label::Flags(i)));
            ops.push(ins(LD_W_ABS, arg_low(a)));
            ops.push(Op::JsetTo(WRITE_FLAGS, Label::Notify, Label::Allow));
        }
    }
    ops.push(Op::Mark(Label::Allow));
    ops.push(ins(RET_K, RET_ALLOW));
    ops.push(Op::Mark(Label::Notify));
    ops.push(ins(RET_K, RET_NOTIFY));
    assemble(ops)
}

fn assemble(ops: Vec<Op>) -> Vec<Insn> {
    let mut at = std::collections::HashMap::new();
    let mut n = 0usize;
    for op in &ops {
        match op {
            Op::Mark(l) => {
                at.insert(label_key(*l), n);
            }
            _ => n += 1,
        }
    }
    let mut out = Vec::with_capacity(n);
    let off = |here: usize, l: Label| -> u8 {
        let target = at[&label_key(l)];
        u8::try_from(target - here - 1).expect("BPF jump too long")
    };
    for op in ops {
        let here = out.len();
        match op {
            Op::Mark(_) => {}
            Op::Ins(i) => out.push(i),
            Op::JeqTo(k, l) => out.push(Insn {
                code: JEQ_K,
                jt: off(here, l),
                jf: 0,
                k,
            }),
            Op::JgeTo(k, l) => out.push(Insn {
                code: JGE_K,
                jt: off(here, l),
                jf: 0,
                k,
            }),
            Op::JsetTo(k, t, f) => out.push(Insn {
                code: JSET_K,
                jt: off(here, t),
                jf: off(here, f),
                k,
            }),
        }
    }
    out
}

fn label_key(l: Label) -> usize {
    match l {
        Label::Allow => usize::MAX,
        Label::Notify => usize::MAX - 1,
        Label::Flags(i) => i,
    }
}

/// `struct sock_fprog`.
#[repr(C)]
pub struct Prog {
    pub len: u16,
    pub filter: *const Insn,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny interpreter of the instructions the program uses, over a `seccomp_data`.
    fn run(prog: &[Insn], nr: i64, args: [u64; 6]) -> u32 {
        let word = |off: u32| -> u32 {
            match off {
                NR => nr as u32,
                ARCH => AUDIT_ARCH,
                o => {
                    let i = ((o - 16) / 8) as usize;
                    args[i] as u32
                }
            }
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => acc = word(i.k),
                JEQ_K => pc += if acc == i.k { i.jt } else { i.jf } as usize,
                JGE_K => pc += if acc >= i.k { i.jt } else { i.jf } as usize,
                JSET_K => pc += if acc & i.k != 0 { i.jt } else { i.jf } as usize,
                RET_K => return i.k,
                c => panic!("unknown code {c:#x}"),
            }
        }
    }

    #[test]
    fn hands_over_writes_and_lets_reads_pass() {
        let p = program();
        let rd = libc::O_RDONLY as u64 | libc::O_CLOEXEC as u64;
        let wr = (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u64;
        assert_eq!(run(&p, libc::SYS_openat, [0, 0, rd, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&p, libc::SYS_openat, [0, 0, wr, 0, 0, 0]), RET_NOTIFY);
        assert_eq!(
            run(&p, libc::SYS_openat, [0, 0, libc::O_RDWR as u64, 0, 0, 0]),
            RET_NOTIFY
        );
        assert_eq!(run(&p, libc::SYS_renameat2, [0; 6]), RET_NOTIFY);
        assert_eq!(run(&p, libc::SYS_unlinkat, [0; 6]), RET_NOTIFY);
        assert_eq!(run(&p, libc::SYS_read, [0; 6]), RET_ALLOW);
        assert_eq!(run(&p, libc::SYS_write, [0; 6]), RET_ALLOW);
        assert_eq!(run(&p, libc::SYS_execve, [0; 6]), RET_ALLOW);
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(run(&p, libc::SYS_open, [0, wr, 0, 0, 0, 0]), RET_NOTIFY);
            assert_eq!(run(&p, libc::SYS_open, [0, rd, 0, 0, 0, 0]), RET_ALLOW);
            assert_eq!(run(&p, libc::SYS_rename, [0; 6]), RET_NOTIFY);
            assert_eq!(run(&p, 0x4000_0000 + 2, [0; 6]), RET_ALLOW);
        }
        for c in calls() {
            let mut args = [0u64; 6];
            if let Some(f) = c.flags {
                args[f] = wr;
            }
            assert_eq!(run(&p, c.nr, args), RET_NOTIFY, "{}", c.name);
        }
    }
}
