//! The HTML pages of the auth service: plain forms that work without
//! script, styled by the web console's stylesheet.

/// `text` with the characters that mean something in HTML escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} · flotilla</title>\n\
         <link rel=\"icon\" href=\"data:,\">\n\
         <link rel=\"stylesheet\" href=\"/_flotilla/ui/style.css\">\n</head>\n\
         <body>\n<main class=\"auth\">\n<h1>{title}</h1>\n{body}</main>\n</body>\n</html>\n"
    )
}

/// An error line, announced to screen readers.
fn alert(message: Option<&str>) -> String {
    match message {
        Some(message) => format!(
            "<p role=\"alert\" class=\"error\">{}</p>\n",
            escape(message)
        ),
        None => String::new(),
    }
}

/// What the login form shows.
pub struct Login<'a> {
    pub csrf: &'a str,
    pub return_to: &'a str,
    pub email: &'a str,
    pub error: Option<&'a str>,
    pub notice: Option<&'a str>,
}

pub fn login(form: &Login<'_>) -> String {
    let notice = form
        .notice
        .map(|n| format!("<p role=\"status\">{}</p>\n", escape(n)))
        .unwrap_or_default();
    let body = format!(
        "{notice}{error}<form method=\"post\" action=\"login\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
         <input type=\"hidden\" name=\"return_to\" value=\"{return_to}\">\n\
         <label for=\"email\">Email</label>\n\
         <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required value=\"{email}\">\n\
         <label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\n\
         <button type=\"submit\">Sign in</button>\n</form>\n\
         <p>No account yet? <a href=\"signup\">Sign up</a></p>\n",
        error = alert(form.error),
        csrf = escape(form.csrf),
        return_to = escape(form.return_to),
        email = escape(form.email),
    );
    page("Sign in", &body)
}

/// What the sign-up form shows.
pub struct Signup<'a> {
    pub csrf: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub error: Option<&'a str>,
}

pub fn signup(form: &Signup<'_>) -> String {
    let body = format!(
        "{error}<form method=\"post\" action=\"signup\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
         <label for=\"name\">Name</label>\n\
         <input id=\"name\" name=\"name\" autocomplete=\"name\" required value=\"{name}\">\n\
         <label for=\"email\">Email</label>\n\
         <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"email\" required value=\"{email}\">\n\
         <label for=\"password\">Password <small>(10 characters or more)</small></label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"new-password\" minlength=\"10\" required>\n\
         <button type=\"submit\">Create the account</button>\n</form>\n\
         <p>Already have an account? <a href=\"login\">Sign in</a></p>\n",
        error = alert(form.error),
        csrf = escape(form.csrf),
        name = escape(form.name),
        email = escape(form.email),
    );
    page("Sign up", &body)
}

/// An authorization request that cannot go back to where it came from.
pub fn authorize_error(message: &str) -> String {
    let body = format!(
        "<p role=\"alert\" class=\"error\">{}</p>\n\
         <p>Go back to the application and try again, or tell its developers.</p>\n",
        escape(message)
    );
    page("Cannot sign in", &body)
}

/// What the sign-out confirmation carries on.
pub struct EndSession<'a> {
    pub csrf: &'a str,
    pub client_id: &'a str,
    pub post_logout_redirect_uri: &'a str,
    pub state: &'a str,
}

/// Asks to confirm signing out, for an application that asked for it.
pub fn end_session(form: &EndSession<'_>) -> String {
    let hidden = |name: &str, value: &str| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n",
            escape(value)
        )
    };
    let body = format!(
        "<p>Sign out of flotilla?</p>\n<form method=\"post\" action=\"end_session\">\n{}{}{}{}\
         <button type=\"submit\">Sign out</button>\n</form>\n",
        hidden("csrf", form.csrf),
        hidden("client_id", form.client_id),
        hidden("post_logout_redirect_uri", form.post_logout_redirect_uri),
        hidden("state", form.state),
    );
    page("Sign out", &body)
}

/// The page after signing out.
pub fn signed_out() -> String {
    page(
        "Signed out",
        "<p role=\"status\">You are signed out.</p>\n<p><a href=\"login\">Sign in again</a></p>\n",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let html = login(&Login {
            csrf: "t",
            return_to: "/\"><script>",
            email: "a@b.c",
            error: Some("<b>"),
            notice: None,
        });
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;b&gt;"));
    }
}
