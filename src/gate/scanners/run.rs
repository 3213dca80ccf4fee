//! Running a scanner process: no stdin, stdout captured up to a bound, the tail of stderr
//! kept for error messages, a timeout after which the process and everything it started
//! (its own process group) is killed. Every failure is a one-line message for the verdict.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::redact::Redactor;

/// A report larger than this is refused (and the rest of the output is drained, not kept).
pub const MAX_STDOUT: usize = 64 << 20;
/// How much of the end of stderr is kept for error messages.
const STDERR_TAIL: usize = 4 << 10;
/// How much of that tail a message shows.
const MESSAGE_TAIL: usize = 600;

/// The command to run and what it gets besides its arguments.
pub struct Invocation<'a> {
    pub argv: &'a [String],
    /// Extra environment (credentials, insecure flags); the rest is inherited but for
    /// `env_remove`.
    pub env: &'a [(String, String)],
    /// Inherited variables the scanner must not see (other registries' passwords).
    pub env_remove: &'a [String],
    pub timeout: Duration,
    /// Secrets that must not appear in messages (passwords and their encodings).
    pub redact: &'a Redactor,
}

/// Run the command; its stdout when it exits 0 and printed something.
pub async fn execute(inv: &Invocation<'_>) -> Result<Vec<u8>, String> {
    let program = inv
        .argv
        .first()
        .ok_or_else(|| "the scanner command is empty".to_string())?;
    let mut cmd = tokio::process::Command::new(program);
    for k in inv.env_remove {
        cmd.env_remove(k);
    }
    cmd.args(&inv.argv[1..])
        .envs(inv.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("failed to start `{program}`: it is not installed or not on PATH")
        } else {
            format!("failed to start `{program}`: {e}")
        }
    })?;
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let finished = tokio::time::timeout(inv.timeout, async {
        let (out, err, status) = tokio::join!(
            read_bounded(stdout, MAX_STDOUT),
            read_tail(stderr, STDERR_TAIL),
            child.wait()
        );
        (out, err, status)
    })
    .await;
    let Ok((out, err, status)) = finished else {
        kill_group(pid);
        let _ = child.kill().await;
        return Err(format!(
            "`{program}` did not finish within {} and was killed",
            humantime::format_duration(inv.timeout)
        ));
    };
    let tail = inv.redact.text(&err.unwrap_or_default());
    let status = status.map_err(|e| format!("failed to wait for `{program}`: {e}"))?;
    let (stdout, overflow) =
        out.map_err(|e| format!("failed to read the output of `{program}`: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`{program}` failed ({}){}",
            describe_status(&status),
            with_tail(&tail)
        ));
    }
    if overflow {
        return Err(format!(
            "`{program}` printed more than {} MiB on stdout: refusing to parse it",
            MAX_STDOUT >> 20
        ));
    }
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Err(format!(
            "`{program}` exited 0 but printed no report on stdout{}",
            with_tail(&tail)
        ));
    }
    Ok(stdout)
}

fn describe_status(status: &std::process::ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("killed by signal {sig}");
        }
    }
    status.to_string()
}

/// `: <last lines of stderr>` or nothing.
fn with_tail(tail: &str) -> String {
    let t = tail.trim();
    if t.is_empty() {
        return String::new();
    }
    let start = t
        .char_indices()
        .map(|(i, _)| i)
        .find(|&i| t.len() - i <= MESSAGE_TAIL)
        .unwrap_or(0);
    let shown = t[start..].split_whitespace().collect::<Vec<_>>().join(" ");
    format!(": {}{shown}", if start > 0 { "…" } else { "" })
}

/// Kill the scanner's process group (what it started too), best effort.
fn kill_group(pid: Option<u32>) {
    #[cfg(unix)]
    if let Some(pid) = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    #[cfg(not(unix))]
    let _ = pid;
}

/// Read to EOF keeping at most `max` bytes; true when there was more.
async fn read_bounded(
    mut r: impl AsyncRead + Unpin,
    max: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut overflow = false;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok((kept, overflow));
        }
        let room = max.saturating_sub(kept.len());
        if n > room {
            overflow = true;
            kept.extend_from_slice(&buf[..room]);
        } else {
            kept.extend_from_slice(&buf[..n]);
        }
    }
}

/// Read to EOF keeping the last `max` bytes, as text.
async fn read_tail(mut r: impl AsyncRead + Unpin, max: usize) -> std::io::Result<String> {
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(String::from_utf8_lossy(&kept).into_owned());
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > max {
            kept.drain(..kept.len() - max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    async fn run(script: &str, timeout: Duration) -> Result<Vec<u8>, String> {
        execute(&Invocation {
            argv: &sh(script),
            env: &[("SCANNER_TEST_VALUE".into(), "from-env".into())],
            env_remove: &[],
            timeout,
            redact: &Redactor::new(&["hunter2"]),
        })
        .await
    }

    #[tokio::test]
    async fn stdout_is_captured_and_env_passed() {
        let out = run(
            "echo \"{\\\"v\\\": \\\"$SCANNER_TEST_VALUE\\\"}\"; echo noise >&2",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "{\"v\": \"from-env\"}\n");
    }

    #[tokio::test]
    async fn non_zero_exit_is_an_error_with_the_stderr_tail_redacted() {
        let e = run(
            "echo '{}'; echo 'FATAL unable to pull: password hunter2 rejected' >&2; exit 3",
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert!(e.contains("exit status 3"), "{e}");
        assert!(e.contains("unable to pull"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[tokio::test]
    async fn removed_variables_are_not_inherited() {
        // HOME stands in for an inherited password variable: set here, absent there.
        assert!(std::env::var_os("HOME").is_some());
        let out = execute(&Invocation {
            argv: &sh("echo \"[${HOME:-unset}]\""),
            env: &[],
            env_remove: &["HOME".to_string()],
            timeout: Duration::from_secs(10),
            redact: &Redactor::none(),
        })
        .await
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "[unset]\n");
    }

    #[tokio::test]
    async fn the_stderr_tail_is_redacted_in_base64_too() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode("bot:hunter2-long-secret");
        let r = Redactor::new(&["hunter2-long-secret"]);
        let e = execute(&Invocation {
            argv: &sh(&format!("echo 'auth {b64} rejected' >&2; exit 1")),
            env: &[],
            env_remove: &[],
            timeout: Duration::from_secs(10),
            redact: &r,
        })
        .await
        .unwrap_err();
        assert!(e.contains("rejected"), "{e}");
        assert!(!e.contains(&b64[4..b64.len() - 4]), "{e}");
    }

    #[tokio::test]
    async fn silence_is_an_error() {
        let e = run(
            "echo '  '; echo 'db is downloading' >&2",
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert!(e.contains("printed no report"), "{e}");
        assert!(e.contains("db is downloading"), "{e}");
    }

    #[tokio::test]
    async fn a_missing_program_is_named() {
        let e = execute(&Invocation {
            argv: &["airlock-surely-not-a-scanner".to_string()],
            env: &[],
            env_remove: &[],
            timeout: Duration::from_secs(10),
            redact: &Redactor::none(),
        })
        .await
        .unwrap_err();
        assert!(e.contains("airlock-surely-not-a-scanner"), "{e}");
        assert!(e.contains("not on PATH"), "{e}");
    }

    #[tokio::test]
    async fn a_scanner_that_hangs_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        let started = std::time::Instant::now();
        // The grandchild would write the marker after 2 s if it outlived the kill.
        let script = format!(
            "(sleep 2; touch {}) & sleep 30; echo late",
            marker.display()
        );
        let e = run(&script, Duration::from_millis(300)).await.unwrap_err();
        assert!(e.contains("did not finish within 300ms"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "killed promptly"
        );
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "the scanner's children were killed too");
    }

    #[tokio::test]
    async fn output_is_bounded_and_stderr_drained() {
        // Lots of stderr must not deadlock the reader of stdout.
        let out = run(
            "head -c 1000000 /dev/zero | tr '\\0' x >&2; echo '{\"ok\":1}'",
            Duration::from_secs(20),
        )
        .await
        .unwrap();
        assert_eq!(out, b"{\"ok\":1}\n");
        let (kept, overflow) = read_bounded(&b"0123456789"[..], 4).await.unwrap();
        assert_eq!((kept.as_slice(), overflow), (&b"0123"[..], true));
        let tail = read_tail(&b"0123456789"[..], 3).await.unwrap();
        assert_eq!(tail, "789");
    }
}
