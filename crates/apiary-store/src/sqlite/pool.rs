//! A small pool of read connections.
//!
//! Opening a SQLite connection costs a file open and schema parse, so read
//! connections are kept and reused; the pool keeps at most `max_idle`.

use std::ops::Deref;
use std::sync::Mutex;

use rusqlite::Connection;

use crate::Result;

type Opener = Box<dyn Fn() -> Result<Connection> + Send + Sync>;

pub(crate) struct Pool {
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
    open: Opener,
}

pub(crate) struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Connection>,
}

impl Pool {
    pub fn new(max_idle: usize, open: impl Fn() -> Result<Connection> + Send + Sync + 'static) -> Pool {
        Pool { idle: Mutex::new(Vec::new()), max_idle, open: Box::new(open) }
    }

    pub fn get(&self) -> Result<Pooled<'_>> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(c) => c,
            None => (self.open)()?,
        };
        Ok(Pooled { pool: self, conn: Some(conn) })
    }
}

impl Deref for Pooled<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("present until drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < self.pool.max_idle {
                idle.push(conn);
            }
        }
    }
}
