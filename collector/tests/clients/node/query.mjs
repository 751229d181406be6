// Runs one query through @clickhouse/client and prints the rows as JSON.
// Usage: node query.mjs URL DATABASE SQL [gzip-request]; the password (a read token) comes from
// CLICKHOUSE_PASSWORD.
import { createClient } from "@clickhouse/client";

const [url, database, query, requestCompression] = process.argv.slice(2);
const client = createClient({
  url,
  database,
  username: "reader",
  password: process.env.CLICKHOUSE_PASSWORD,
  compression: { request: requestCompression === "gzip", response: true },
});
try {
  if (!(await client.ping()).success) throw new Error("ping failed");
  const result = await client.query({ query, format: "JSONEachRow" });
  console.log(JSON.stringify(await result.json()));
} finally {
  await client.close();
}
