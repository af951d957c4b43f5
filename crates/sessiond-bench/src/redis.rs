//! The Redis anchor of the fan-out scenario: `redis-server` as a child
//! process (Debian's package, which `scripts/bench` installs), and just
//! enough of RESP to PUBLISH and SUBSCRIBE.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use crate::scratch::ScratchDir;

/// A running `redis-server`, killed on drop.
pub struct RedisServer {
    child: Child,
    pub addr: SocketAddr,
    _home: ScratchDir,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisServer {
    /// The child, for reading `/proc`.
    pub fn process(&self) -> crate::procfs::Process {
        crate::procfs::Process::Pid(self.child.id())
    }

    /// Starts `redis-server` from the PATH on a free loopback port, without
    /// persistence; `None` when it is not installed.
    pub async fn start() -> anyhow::Result<Option<Self>> {
        let home = ScratchDir::new("redis")?;
        let addr = crate::server::free_port()?;
        let spawned = Command::new("redis-server")
            .args(["--port", &addr.port().to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .current_dir(home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err).context("starting redis-server"),
        };
        let server = Self { child, addr, _home: home };
        let started = Instant::now();
        loop {
            if let Ok(mut connection) = Connection::open(addr).await
                && matches!(connection.command(&[b"PING"]).await, Ok(Reply::Simple(pong)) if pong == "PONG")
            {
                return Ok(Some(server));
            }
            if started.elapsed() > Duration::from_secs(10) {
                bail!("redis-server not answering after 10 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One RESP connection.
pub struct Connection {
    stream: BufReader<TcpStream>,
}

/// A RESP reply, as far as PUBLISH and SUBSCRIBE need.
#[derive(Debug)]
pub enum Reply {
    Simple(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self { stream: BufReader::new(stream) })
    }

    /// Sends one command and reads its reply.
    pub async fn command(&mut self, args: &[&[u8]]) -> anyhow::Result<Reply> {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        self.stream.get_mut().write_all(&request).await?;
        self.reply().await
    }

    /// Reads one reply (a pushed message, once subscribed).
    pub async fn reply(&mut self) -> anyhow::Result<Reply> {
        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            bail!("redis closed the connection");
        }
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(1);
        Ok(match kind {
            "+" => Reply::Simple(rest.to_owned()),
            "-" => bail!("redis error: {rest}"),
            ":" => Reply::Integer(rest.parse()?),
            "$" => {
                let len: i64 = rest.parse()?;
                if len < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut data = vec![0; len as usize + 2];
                    self.stream.read_exact(&mut data).await?;
                    data.truncate(len as usize);
                    Reply::Bulk(Some(data))
                }
            }
            "*" => {
                let count: i64 = rest.parse()?;
                let mut items = Vec::with_capacity(count.max(0) as usize);
                for _ in 0..count.max(0) {
                    items.push(Box::pin(self.reply()).await?);
                }
                Reply::Array(items)
            }
            other => bail!("unexpected RESP type {other:?}"),
        })
    }
}
