//! The proxy this machine already uses, found for the wizard to propose as `[cloud] proxy`: the
//! installing session's environment (`HTTPS_PROXY`, `ALL_PROXY`), and on Windows the machine's
//! WinHTTP setting (`netsh winhttp set proxy`, what services use) and then the administrator's
//! own Internet Options. The service has none of these at run time, which is why the wizard
//! proposes the one it found and the config names it.
//!
//! A proxy auto-configuration script (PAC, "Automatically detect settings") names no single
//! proxy: it is reported as such, and the administrator types the proxy the script picks.

/// A proxy found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// `http://host:port`, without any user name or password.
    pub url: String,
    /// Where it was found, in words ("HTTPS_PROXY", "the machine's WinHTTP proxy (netsh winhttp)").
    pub source: String,
    /// The user name the environment's URL held (its password is never taken from there).
    pub username: Option<String>,
}

/// What an environment names, in curl's order: `HTTPS_PROXY`, `https_proxy`, `ALL_PROXY`,
/// `all_proxy`.
pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Option<Found> {
    ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .into_iter()
        .find_map(|var| {
            let v = env(var)?;
            let v = v.trim();
            if v.is_empty() {
                return None;
            }
            // curl takes `host:port` as http://host:port.
            let text = if v.contains("://") {
                v.to_string()
            } else {
                format!("http://{v}")
            };
            let mut u = reqwest::Url::parse(&text).ok()?;
            let username = (!u.username().is_empty()).then(|| u.username().to_string());
            let _ = u.set_password(None);
            let _ = u.set_username("");
            Some(Found {
                url: u.as_str().trim_end_matches('/').to_string(),
                source: var.to_string(),
                username,
            })
        })
}

/// The proxy for https requests in a WinHTTP / Internet Options proxy string: `host:port`, or a
/// per-scheme list `http=host:port;https=host2:port` (the `https=` entry, else the `http=` one;
/// a `socks=` entry alone is not an HTTP proxy). Several entries for one scheme: the first.
pub fn from_windows_text(proxy: &str) -> Option<String> {
    let entries: Vec<&str> = proxy
        .split([';', ' '])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let pick = |scheme: &str| {
        entries.iter().find_map(|e| {
            e.split_once('=')
                .filter(|(s, _)| s.eq_ignore_ascii_case(scheme))
                .map(|(_, v)| v.trim())
        })
    };
    let host = pick("https")
        .or_else(|| pick("http"))
        .or_else(|| entries.iter().copied().find(|e| !e.contains('=')))?;
    let host = host
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    (!host.is_empty()).then(|| format!("http://{host}"))
}

/// The first proxy found: the environment, then (Windows) WinHTTP, then Internet Options.
/// `Err` says what was found that names no proxy (a PAC script).
pub fn detect() -> Result<Option<Found>, String> {
    if let Some(f) = from_env(|n| std::env::var(n).ok()) {
        return Ok(Some(f));
    }
    windows()
}

#[cfg(windows)]
fn windows() -> Result<Option<Found>, String> {
    use windows_sys::Win32::Foundation::GlobalFree;
    use windows_sys::Win32::Networking::WinHttp::{
        WINHTTP_ACCESS_TYPE_NAMED_PROXY, WINHTTP_CURRENT_USER_IE_PROXY_CONFIG, WINHTTP_PROXY_INFO,
        WinHttpGetDefaultProxyConfiguration, WinHttpGetIEProxyConfigForCurrentUser,
    };
    // SAFETY: the strings WinHTTP allocates are read up to their NUL, then freed with
    // GlobalFree as its documentation says.
    unsafe fn take(p: windows_sys::core::PWSTR) -> Option<String> {
        if p.is_null() {
            return None;
        }
        // SAFETY: WinHTTP returns NUL-terminated strings.
        let text = unsafe {
            let mut n = 0;
            while *p.add(n) != 0 {
                n += 1;
            }
            String::from_utf16_lossy(std::slice::from_raw_parts(p, n))
        };
        // SAFETY: allocated by WinHTTP with GlobalAlloc.
        unsafe { GlobalFree(p.cast()) };
        Some(text)
    }
    let mut info = WINHTTP_PROXY_INFO::default();
    // SAFETY: an out-parameter WinHTTP fills.
    if unsafe { WinHttpGetDefaultProxyConfiguration(&mut info) } != 0 {
        // SAFETY: as above.
        let proxy = unsafe { take(info.lpszProxy) };
        // SAFETY: as above.
        let _ = unsafe { take(info.lpszProxyBypass) };
        if info.dwAccessType == WINHTTP_ACCESS_TYPE_NAMED_PROXY
            && let Some(url) = proxy.as_deref().and_then(from_windows_text)
        {
            return Ok(Some(Found {
                url,
                source: "the machine's WinHTTP proxy (netsh winhttp show proxy)".into(),
                username: None,
            }));
        }
    }
    let mut ie = WINHTTP_CURRENT_USER_IE_PROXY_CONFIG::default();
    // SAFETY: an out-parameter WinHTTP fills.
    if unsafe { WinHttpGetIEProxyConfigForCurrentUser(&mut ie) } != 0 {
        // SAFETY: as above.
        let (proxy, pac, _) = unsafe {
            (
                take(ie.lpszProxy),
                take(ie.lpszAutoConfigUrl),
                take(ie.lpszProxyBypass),
            )
        };
        if let Some(url) = proxy.as_deref().and_then(from_windows_text) {
            return Ok(Some(Found {
                url,
                source: "your Internet Options (Connections > LAN settings)".into(),
                username: None,
            }));
        }
        if let Some(pac) = pac {
            return Err(format!(
                "Internet Options use a proxy script ({pac}), which names no single proxy; type the proxy it picks for the cloud"
            ));
        }
    }
    Ok(None)
}

#[cfg(not(windows))]
fn windows() -> Result<Option<Found>, String> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_in_curls_order_without_the_password() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            }
        };
        type Vars = &'static [(&'static str, &'static str)];
        type Want = Option<(&'static str, &'static str, Option<&'static str>)>;
        let cases: [(Vars, Want); 6] = [
            (&[], None),
            (&[("HTTPS_PROXY", "  ")], None),
            (
                &[
                    ("HTTPS_PROXY", "http://p:3128"),
                    ("ALL_PROXY", "http://q:1"),
                ],
                Some(("http://p:3128", "HTTPS_PROXY", None)),
            ),
            (
                &[("all_proxy", "q.corp:8080")],
                Some(("http://q.corp:8080", "all_proxy", None)),
            ),
            (
                &[("https_proxy", "http://bob:S3cret@p.corp:3128/")],
                Some(("http://p.corp:3128", "https_proxy", Some("bob"))),
            ),
            (&[("HTTPS_PROXY", "http://[::1")], None),
        ];
        for (vars, want) in cases {
            let got = from_env(env(vars));
            assert_eq!(
                got.as_ref()
                    .map(|f| (f.url.as_str(), f.source.as_str(), f.username.as_deref())),
                want,
                "{vars:?}"
            );
            assert!(!format!("{got:?}").contains("S3cret"));
        }
    }

    /// The formats Microsoft documents for `netsh winhttp set proxy` and Internet Options'
    /// proxy string (`WINHTTP_PROXY_INFO.lpszProxy`).
    #[test]
    fn windows_proxy_strings() {
        for (text, want) in [
            ("proxy.corp:8080", Some("http://proxy.corp:8080")),
            ("http=a:80;https=b:443", Some("http://b:443")),
            ("http=a:80", Some("http://a:80")),
            ("HTTPS=b:443;ftp=c:21", Some("http://b:443")),
            ("socks=s:1080", None),
            ("http://proxy.corp:3128", Some("http://proxy.corp:3128")),
            ("p1:80 p2:80", Some("http://p1:80")),
            ("", None),
        ] {
            assert_eq!(from_windows_text(text).as_deref(), want, "{text}");
        }
    }
}
