// Checks orderflow's webhook signatures with the Standard Webhooks reference library, an
// implementation independent of the Go code under test. Input on stdin (JSON):
//   {"verify": [{"secret", "headers": {...}, "body"}], "sign": [{"secret", "id", "timestamp", "body"}]}
// Output on stdout: {"verify": [null | "error text"], "sign": ["v1,..."]}
"use strict";
const { Webhook } = require("standardwebhooks");

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const req = JSON.parse(input);
  const out = { verify: [], sign: [] };
  for (const c of req.verify || []) {
    try {
      new Webhook(c.secret).verify(c.body, c.headers);
      out.verify.push(null);
    } catch (e) {
      out.verify.push(String((e && e.message) || e));
    }
  }
  for (const c of req.sign || []) {
    out.sign.push(new Webhook(c.secret).sign(c.id, new Date(c.timestamp * 1000), c.body));
  }
  process.stdout.write(JSON.stringify(out));
});
