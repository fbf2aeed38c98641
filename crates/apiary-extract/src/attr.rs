//! Attribute names and values.
//!
//! Names are HoneyDB's, so that `/payload-history/attributes/{name}` answers the
//! same questions a HoneyDB client already asks. The list is closed (an enum)
//! so storage can key on a small integer and the API can list every name.

use std::fmt;

/// Longest value kept, in bytes of its escaped text. Longer values are cut at a
/// character boundary and flagged, never dropped: an oversized exploit body is
/// still worth a record, but one 64 KiB body per day per sensor is not.
pub const MAX_VALUE_BYTES: usize = 2048;

/// Most attributes one payload may yield. Bounds the work (and the rows) a
/// hostile payload with thousands of headers or pipelined commands can cause.
pub const MAX_ATTRIBUTES: usize = 128;

macro_rules! attr_names {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )*) => {
        /// One kind of extracted value, named as HoneyDB names it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum AttrName {
            $( $(#[$doc])* $variant, )*
        }

        /// Every attribute name this crate can emit, in documentation order.
        pub const ATTRIBUTE_NAMES: &[AttrName] = &[ $( AttrName::$variant, )* ];

        impl AttrName {
            /// HoneyDB's spelling, e.g. `http-user-agent`.
            pub const fn as_str(self) -> &'static str {
                match self { $( AttrName::$variant => $name, )* }
            }

            /// The name for a HoneyDB spelling (exact, lowercase).
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $( $name => Some(AttrName::$variant), )* _ => None }
            }
        }
    };
}

attr_names! {
    /// HTTP request method (`GET`, `POST`, `PROPFIND`, ...).
    HttpMethod => "http-method",
    /// HTTP request path: the request target before `?` (absolute-form URIs keep scheme and host).
    HttpPath => "http-path",
    /// HTTP query string: the request target after `?`, without the `?`.
    HttpQuery => "http-query",
    /// HTTP version token from the request line (`HTTP/1.1`).
    HttpVersion => "http-version",
    /// Value of the `Host` header.
    HttpHost => "http-host",
    /// Value of the `User-Agent` header.
    HttpUserAgent => "http-user-agent",
    /// Any other header, as the line `Name: value`.
    HttpHeader => "http-header",
    /// `http` or `https`: the scheme of an absolute-form target, else the service's.
    HttpScheme => "http-scheme",
    /// Request body (cut to the value limit).
    HttpBody => "http-body",
    /// SIP request method (`OPTIONS`, `REGISTER`, `INVITE`, ...).
    SipMethod => "sip-method",
    /// SIP header other than `User-Agent`, as the line `Name: value`.
    SipHeader => "sip-header",
    /// Value of the SIP `User-Agent` header.
    SipHeaderUserAgent => "sip-header-user-agent",
    /// One Redis command with its arguments, space-separated (RESP or inline).
    RedisCommand => "redis-command",
    /// One memcached command line (text protocol) or opcode name (binary protocol).
    MemcachedCommand => "memcached-command",
    /// One shell command line typed in a Telnet or SSH session.
    ShellCommand => "shell-command",
    /// A login name tried (Telnet, SSH, FTP, SMTP AUTH, ...).
    Username => "username",
    /// A password tried.
    Password => "password",
    /// One FTP command line.
    FtpCommand => "ftp-command",
    /// One SMTP command line (message data excluded).
    SmtpCommand => "smtp-command",
    /// The user name of a MySQL handshake response.
    MysqlUsername => "mysql-username",
    /// VNC: the client's `RFB xxx.yyy` version, its chosen security type, or its auth response.
    RemoteFrameBuffer => "remote-frame-buffer",
    /// DNS: a queried name, lowercased, without the trailing dot.
    Domain => "domain",
    /// Fallback: the payload with non-printable bytes escaped, for services without a parser.
    Payload => "payload",
}

impl fmt::Display for AttrName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A borrowed attribute, as handed to a visitor: valid only during the call,
/// so extraction needs no allocation when values are already clean text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    pub name: AttrName,
    pub value: &'a str,
    /// The value was cut to [`MAX_VALUE_BYTES`].
    pub truncated: bool,
}

impl Attr<'_> {
    pub fn to_owned(&self) -> Attribute {
        Attribute { name: self.name, value: self.value.to_owned(), truncated: self.truncated }
    }
}

/// An owned attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attribute {
    pub name: AttrName,
    pub value: String,
    /// The value was cut to [`MAX_VALUE_BYTES`].
    pub truncated: bool,
}

impl Attribute {
    pub fn as_attr(&self) -> Attr<'_> {
        Attr { name: self.name, value: &self.value, truncated: self.truncated }
    }
}
