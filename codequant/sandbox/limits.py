"""Resource limits for one sandboxed program.

The defaults suit HumanEval-like programs: a few test asserts that finish in well under a second and need a few
MB. The limits exist to stop the pathological completions a small or heavily quantized model writes (endless
loops, memory bombs, output floods, fork loops) from stalling an evaluation or taking the machine down, not to
make honest programs fail: every limit leaves generous head room.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from codequant.errors import CodequantError


@dataclass(frozen=True)
class Limits:
    """What one program may use. `None` switches a limit off.

    wall_timeout_s: wall clock from start to exit; past it the whole process group is SIGKILLed -> `timeout`.
    cpu_s: RLIMIT_CPU (SIGXCPU -> `timeout`); catches CPU burners even when the machine is oversubscribed.
    address_space_mb: RLIMIT_AS; an allocation beyond it raises MemoryError -> `memory`. Too small for a JVM,
        which reserves virtual memory up front: the Java sandbox sets its own.
    file_size_mb: RLIMIT_FSIZE, the largest file the program may write (SIGXFSZ beyond).
    max_processes: RLIMIT_NPROC (processes + threads of the user). Binds only for a non-root user (see `user`).
    open_files: RLIMIT_NOFILE.
    output_cap_bytes: how much of stdout/stderr is kept (the tail) in the result.
    output_limit_bytes: total bytes read per stream after which the program is killed (-> `killed`), so an
        endless print loop neither eats the parent's CPU until the timeout nor its memory.
    isolate_network / isolate_pids: use a fresh network / PID namespace when the machine allows it
        (see `codequant.sandbox.isolation`); skipped, with a logged warning, where it does not.
    isolate_files: a fresh mount namespace: the host file system read-only, private tmpfs /tmp, /var/tmp and
        /dev/shm, a private /proc; only the scratch dir is writable. Skipped (warned) where not allowed.
    isolate_ipc: a fresh IPC namespace (SysV shared memory, semaphores, message queues of the run's own).
    memory_mb: all processes of the run together (a memory cgroup; root only); past it the kernel kills inside
        the run -> `memory`. Covers what RLIMIT_AS cannot: forked children, a JVM's off-heap memory.
    disk_mb: the scratch dir is a tmpfs of this size (with a mount namespace): the run's total disk quota.
    isolate_cpu: its own cpu cgroup with the default weight (root only): concurrent programs share the CPU run
        by run, not process by process, whatever the kernel's autogroup does.
    seccomp: a seccomp filter: socket(AF_UNIX) fails (no host path socket can be reached), the kernel keyring
        calls fail (nothing crosses from one run to the next).
    user: run as this (unprivileged) user; needs root. None: $CODEQUANT_SANDBOX_USER, else the user
        `codequant-sandbox` when it exists and we are root, else the current user.
    python: the interpreter for Python programs; None means the one running codequant. With `user`, it must be
        executable by that user.
    """

    wall_timeout_s: float = 10.0
    cpu_s: int | None = 10
    address_space_mb: int | None = 2048
    file_size_mb: int | None = 16
    max_processes: int | None = 128
    open_files: int | None = 256
    output_cap_bytes: int = 64 * 1024
    output_limit_bytes: int = 32 * 1024 * 1024
    isolate_network: bool = True
    isolate_pids: bool = True
    isolate_files: bool = True
    isolate_ipc: bool = True
    memory_mb: int | None = 2048
    disk_mb: int | None = 256
    seccomp: bool = True
    isolate_cpu: bool = True
    user: str | None = None
    python: str | None = None

    def __post_init__(self) -> None:
        if not self.wall_timeout_s > 0:
            raise CodequantError(f"wall timeout must be > 0 seconds, got {self.wall_timeout_s}")
        for name in (
            "cpu_s",
            "address_space_mb",
            "file_size_mb",
            "max_processes",
            "open_files",
            "memory_mb",
            "disk_mb",
        ):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise CodequantError(f"limit {name} must be positive or None (off), got {value}")
        if self.output_cap_bytes < 0 or self.output_limit_bytes <= 0:
            raise CodequantError("output_cap_bytes must be >= 0 and output_limit_bytes > 0")

    def with_timeout(self, seconds: float) -> Limits:
        """The same limits with another wall timeout; the CPU limit (when on) becomes the same number of seconds."""
        cpu = self.cpu_s
        if cpu is not None:
            cpu = max(1, int(seconds + 0.999))
        return replace(self, wall_timeout_s=seconds, cpu_s=cpu)

    def rlimits(self) -> dict[str, tuple[int, int]]:
        """setrlimit arguments by `resource` constant name (applied in the child right before exec)."""
        mb = 1024 * 1024
        out: dict[str, tuple[int, int]] = {"RLIMIT_CORE": (0, 0)}
        if self.cpu_s is not None:
            # soft -> SIGXCPU (classified as timeout); hard one second later -> SIGKILL if SIGXCPU is caught
            out["RLIMIT_CPU"] = (int(self.cpu_s), int(self.cpu_s) + 1)
        if self.address_space_mb is not None:
            out["RLIMIT_AS"] = (self.address_space_mb * mb,) * 2
        if self.file_size_mb is not None:
            out["RLIMIT_FSIZE"] = (self.file_size_mb * mb,) * 2
        if self.max_processes is not None:
            out["RLIMIT_NPROC"] = (self.max_processes,) * 2
        if self.open_files is not None:
            out["RLIMIT_NOFILE"] = (self.open_files,) * 2
        return out
