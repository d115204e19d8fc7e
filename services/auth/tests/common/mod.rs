//! What the auth service's tests share: a browser that keeps cookies and
//! sees redirections, and a sign-up.

#![allow(dead_code)]

use flotilla_kit::testing::TestService;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::json;

pub const PASSWORD: &str = "correct horse battery";

pub async fn signup(app: &TestService, email: &str) -> reqwest::Response {
    let body = json!({ "email": email, "name": "Ada", "password": PASSWORD });
    app.post("/signup", &body).await
}

/// A browser: a client that sends back what it was given as cookies, and
/// does not follow redirections (the tests look at them).
pub struct Browser {
    pub client: reqwest::Client,
    pub cookies: Vec<(String, String)>,
}

impl Browser {
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            client,
            cookies: Vec::new(),
        }
    }

    pub fn keep(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(SET_COOKIE) {
            let pair = value.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !value.is_empty() {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    pub fn cookie_header(&self) -> String {
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        pairs.join("; ")
    }

    pub async fn get(&mut self, url: String) -> reqwest::Response {
        let response = self
            .client
            .get(url)
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(&response);
        response
    }

    pub async fn post_form(&mut self, url: String, form: &[(&str, &str)]) -> reqwest::Response {
        let response = self
            .client
            .post(url)
            .header(COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep(&response);
        response
    }

    /// The CSRF token of the form on the page at `url`.
    pub async fn csrf(&mut self, url: String) -> String {
        let page = self.get(url).await.text().await.unwrap();
        let start = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
        page[start..start + 64].to_owned()
    }

    pub async fn login(
        &mut self,
        app: &TestService,
        email: &str,
        password: &str,
    ) -> reqwest::Response {
        let csrf = self.csrf(app.at("/login")).await;
        let form = [
            ("csrf", csrf.as_str()),
            ("email", email),
            ("password", password),
        ];
        self.post_form(app.at("/login"), &form).await
    }
}
