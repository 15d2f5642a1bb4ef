//! The write guard: installing the filter in the command's process (between fork and exec),
//! and answering the notifications it sends.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use super::bpf::{self, Insn, Prog};
use super::{GuardPolicy, Report};

/// What the filter needs in the child, prepared before the fork (the child may not allocate).
pub struct Installer {
    prog: Vec<Insn>,
    /// The child's end of the socket the listener descriptor is sent over.
    child_end: RawFd,
}

/// Why no listener arrived.
pub enum Lost {
    /// The command died before it could send one.
    Ended,
    /// The kernel refused the filter: the command runs unguarded.
    Refused(String),
    /// The filter is installed but its listener did not arrive: the command cannot write.
    Listener,
}

/// The supervisor's end: receives the listener from the child.
pub struct Receiver {
    parent_end: OwnedFd,
}

/// A socket pair for passing the listener descriptor from the child to the supervisor.
pub fn channel() -> std::io::Result<(Installer, Receiver, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into `fds`.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here.
    let (parent_end, child_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let raw = child_end.as_raw_fd();
    Ok((
        Installer {
            prog: bpf::program(),
            child_end: raw,
        },
        Receiver { parent_end },
        child_end,
    ))
}

impl Installer {
    /// In the child, after fork, before exec: forbid new privileges, install the filter with a
    /// listener and send the listener (or the errno of the failure) to the supervisor. Only
    /// async-signal-safe system calls. A failure leaves the child unguarded (reported).
    pub fn install_in_child(&self) {
        let prog = Prog {
            len: self.prog.len() as u16,
            filter: self.prog.as_ptr(),
        };
        // SAFETY: raw system calls on memory prepared before the fork.
        unsafe {
            let mut err: i32 = 0;
            let mut fd: i32 = -1;
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                err = *libc::__errno_location();
            } else {
                let r = libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                    &prog as *const Prog,
                );
                if r < 0 {
                    err = *libc::__errno_location();
                } else {
                    fd = r as i32;
                }
            }
            send_fd(self.child_end, fd, err);
            if fd >= 0 {
                libc::close(fd);
            }
            libc::close(self.child_end);
        }
    }
}

/// sendmsg of `err` with `fd` attached (when `fd >= 0`). Async-signal-safe.
unsafe fn send_fd(sock: RawFd, fd: RawFd, err: i32) {
    let mut data = err.to_ne_bytes();
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut cbuf = [0u64; 4];
    // SAFETY: a zeroed msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if fd >= 0 {
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) } as usize;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer is large enough for one descriptor.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<i32>(), fd);
        }
    }
    unsafe {
        libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL);
    }
}

impl Receiver {
    /// The listener, or why the child has none. Blocks until the child sent it (or died).
    pub fn receive(self) -> Result<OwnedFd, Lost> {
        let mut data = [0u8; 4];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        let mut cbuf = [0u64; 4];
        // SAFETY: a zeroed msghdr is valid; the buffers outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
        let n = loop {
            // SAFETY: see above.
            let n = unsafe {
                libc::recvmsg(
                    self.parent_end.as_raw_fd(),
                    &mut msg,
                    libc::MSG_CMSG_CLOEXEC,
                )
            };
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break n;
        };
        if n < 4 {
            return Err(Lost::Ended);
        }
        let err = i32::from_ne_bytes(data);
        if err != 0 {
            return Err(Lost::Refused(format!(
                "seccomp user notification refused: {}",
                std::io::Error::from_raw_os_error(err)
            )));
        }
        // SAFETY: reading the control message the kernel filled in.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
                // The filter is in place but nobody can answer it: every write would fail.
                return Err(Lost::Listener);
            }
            let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>());
            Ok(OwnedFd::from_raw_fd(fd))
        }
    }
}

/// `SECCOMP_IOCTL_NOTIF_ID_VALID` as kernels before 5.9 numbered it (`_IOR`); libc has the
/// corrected `_IOW` number, which those kernels refuse.
const NOTIF_ID_VALID_OLD: libc::Ioctl = 0x8008_2102 as libc::Ioctl;

/// Whether the caller of notification `id` is still in that system call (the memory read for it
/// is trustworthy only then). `None`: neither ioctl number is known to this kernel.
fn id_valid(fd: RawFd, id: u64) -> Option<bool> {
    for nr in [libc::SECCOMP_IOCTL_NOTIF_ID_VALID, NOTIF_ID_VALID_OLD] {
        // SAFETY: the ioctl reads one u64.
        if unsafe { libc::ioctl(fd, nr, &id) } == 0 {
            return Some(true);
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOENT) => return Some(false),
            _ => continue,
        }
    }
    None
}

/// Whether this kernel can let a notified call go on (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`, Linux
/// 5.5): without it, every guarded call would wait for an answer that cannot be given.
pub fn kernel_supported() -> Result<(), String> {
    // SAFETY: uname fills a zeroed struct.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err("uname failed".into());
    }
    let release: String = u
        .release
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8 as char)
        .collect();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    if (major, minor) < (5, 5) {
        return Err(format!("needs Linux 5.5 or newer, this is {release}"));
    }
    Ok(())
}

/// Answer notifications until every guarded process is gone. Refusals are passed to `report`;
/// so is, once, a guard that turns out unable to judge (the agent's memory unreadable).
pub fn serve(listener: OwnedFd, policy: &GuardPolicy, report: &dyn Fn(Report)) {
    let fd = listener.as_raw_fd();
    let mut blind_reported = false;
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, -1) };
        if r < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if pfd.revents & libc::POLLIN == 0 {
            // POLLHUP: no process uses the filter any more.
            return;
        }
        // SAFETY: the kernel fills a zeroed seccomp_notif.
        let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) } != 0 {
            // ENOENT: the caller died meanwhile; EINTR.
            continue;
        }
        let verdict = match judge(&req, policy) {
            Judged::Allow => None,
            Judged::Forbid(r) => Some(r),
            Judged::Blind(why) => {
                if !std::mem::replace(&mut blind_reported, true) {
                    report(Report::Guard {
                        active: false,
                        reason: Some(why),
                    });
                }
                None
            }
        };
        // The memory read is only trustworthy if the caller is still in that system call.
        let valid = id_valid(fd, req.id).unwrap_or(true);
        let mut resp = libc::seccomp_notif_resp {
            id: req.id,
            val: 0,
            error: 0,
            flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
        };
        let blocked = match verdict {
            Some(b) if valid => {
                resp.error = -libc::EACCES;
                resp.flags = 0;
                Some(b)
            }
            _ => None,
        };
        // SAFETY: a filled-in response for this notification. ENOENT: the caller died.
        if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) } != 0
            && std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT)
        {
            // The kernel refuses our answers: the guarded processes would wait for ever.
            // Closing the listener makes their calls fail instead (ENOSYS), and says so.
            report(Report::Guard {
                active: false,
                reason: Some(format!(
                    "the kernel refused the guard's answer: {}",
                    std::io::Error::last_os_error()
                )),
            });
            return;
        }
        if let Some(b) = blocked {
            report(b);
        }
    }
}

enum Judged {
    Allow,
    Forbid(Report),
    /// The call could not be judged (the caller's memory is unreadable): let through.
    Blind(String),
}

/// Whether `raw` names a descriptor the process already has (`/dev/stderr`, `/dev/fd/3`,
/// `/proc/self/fd/1`): reopening it writes where the process may write already, and resolving
/// it here would resolve the supervisor's descriptors instead.
fn names_own_descriptor(raw: &Path) -> bool {
    let s = raw.to_string_lossy();
    matches!(&*s, "/dev/stdin" | "/dev/stdout" | "/dev/stderr")
        || s.starts_with("/dev/fd/")
        || s.starts_with("/proc/self/fd/")
        || s.starts_with("/proc/thread-self/fd/")
        || (s.starts_with("/proc/") && s.contains("/fd/"))
}

/// `/proc/self` and `/proc/thread-self` as the caller sees them.
fn as_caller(raw: &Path, pid: i32) -> PathBuf {
    let s = raw.to_string_lossy();
    for prefix in ["/proc/self", "/proc/thread-self"] {
        if let Some(rest) = s.strip_prefix(prefix)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return PathBuf::from(format!("/proc/{pid}{rest}"));
        }
    }
    raw.to_path_buf()
}

/// Whether the call writes into a protected zone.
fn judge(req: &libc::seccomp_notif, policy: &GuardPolicy) -> Judged {
    let Some(call) = bpf::find(req.data.nr as i64) else {
        return Judged::Allow;
    };
    let pid = req.pid as i32;
    let args = req.data.args;
    let blind = || {
        Judged::Blind(format!(
            "cannot read the agent's memory ({}; a ptrace policy such as Yama's ptrace_scope=2?)",
            std::io::Error::last_os_error()
        ))
    };
    // The open flags: in the call's arguments, or in openat2's `struct open_how { u64 flags; … }`.
    let flags: Option<i32> = match (call.flags, call.how) {
        (Some(f), _) => Some(args[f] as i32),
        (None, Some(h)) => {
            let Some(bytes) = read_bytes(pid, args[h], 8) else {
                return blind();
            };
            let Ok(b) = <[u8; 8]>::try_from(bytes.as_slice()) else {
                return blind();
            };
            Some(u64::from_ne_bytes(b) as i32)
        }
        (None, None) => None,
    };
    if flags.is_some_and(|f| f as u32 & bpf::WRITE_FLAGS == 0) {
        return Judged::Allow;
    }
    for p in call.paths {
        let Some(raw) = read_path(pid, args[p.path]) else {
            return blind();
        };
        let raw = as_caller(&raw, pid);
        if names_own_descriptor(&raw) {
            continue;
        }
        let dirfd = p.dirfd.map(|i| args[i] as i32).unwrap_or(libc::AT_FDCWD);
        // The kernel follows a final symlink unless told not to, or asked to create exclusively.
        let follow = p.follow && flags.is_none_or(|f| f & (libc::O_NOFOLLOW | libc::O_EXCL) == 0);
        let Some(path) = resolve(pid, dirfd, &raw, follow) else {
            continue;
        };
        // A call that cannot write (it fails by itself) is left to fail the way it would:
        // `mkdir -p` of a directory that exists must see EEXIST, not EACCES.
        let exists = std::fs::symlink_metadata(&path).is_ok();
        let creates = flags.is_none_or(|f| f & libc::O_CREAT != 0);
        let no_op = match p.effect {
            bpf::Effect::Create => exists,
            bpf::Effect::Change => !exists,
            bpf::Effect::Write => !exists && !creates,
        };
        if no_op {
            continue;
        }
        if let Some(zone) = policy.forbids(&path) {
            return Judged::Forbid(Report::Blocked {
                pid: pid as u32,
                command: super::reaper::command_of(pid),
                op: verb(call.name).to_string(),
                path,
                zone: zone.label.clone(),
            });
        }
    }
    Judged::Allow
}

/// What a guarded call does to its path, in a word for the report.
fn verb(call: &str) -> &'static str {
    match call {
        "open" | "openat" | "openat2" | "creat" => "write",
        "truncate" => "truncate",
        "rename" | "renameat" | "renameat2" => "rename",
        "unlink" | "unlinkat" | "rmdir" => "delete",
        "mkdir" | "mkdirat" => "mkdir",
        "mknod" | "mknodat" => "mknod",
        "link" | "linkat" => "link",
        "symlink" | "symlinkat" => "symlink",
        _ => "write",
    }
}

/// The absolute path a call on (`dirfd`, `raw`) reaches, with symbolic links resolved the way
/// the kernel will: in the parent directories always, in the last component when `follow`.
/// `None` when the parent does not exist (the call fails by itself).
fn resolve(pid: i32, dirfd: i32, raw: &Path, follow: bool) -> Option<PathBuf> {
    let joined = if raw.is_absolute() {
        raw.to_path_buf()
    } else {
        let base = if dirfd == libc::AT_FDCWD {
            std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?
        } else {
            std::fs::read_link(format!("/proc/{pid}/fd/{dirfd}")).ok()?
        };
        base.join(raw)
    };
    let name = joined.file_name().map(|n| n.to_owned());
    let Some(name) = name.filter(|_| !raw.ends_with("..") && !raw.ends_with(".")) else {
        return std::fs::canonicalize(&joined)
            .ok()
            .or(Some(super::normalize(&joined)));
    };
    let parent = std::fs::canonicalize(joined.parent()?).ok()?;
    let full = parent.join(&name);
    if follow && full.is_symlink() {
        return Some(match std::fs::canonicalize(&full) {
            Ok(p) => p,
            // A dangling link: where it would create the file.
            Err(_) => {
                let target = std::fs::read_link(&full).ok()?;
                super::normalize(&parent.join(target))
            }
        });
    }
    Some(full)
}

fn read_path(pid: i32, addr: u64) -> Option<PathBuf> {
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < 4096 {
        let page_left = 4096 - (at % 4096) as usize;
        let chunk = read_bytes(pid, at, page_left)?;
        if let Some(i) = chunk.iter().position(|b| *b == 0) {
            out.extend_from_slice(&chunk[..i]);
            return Some(PathBuf::from(OsString::from_vec(out)));
        }
        out.extend_from_slice(&chunk);
        at += chunk.len() as u64;
    }
    None
}

fn read_bytes(pid: i32, addr: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: reads another process's memory into `buf`, at most `len` bytes.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if n <= 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}
