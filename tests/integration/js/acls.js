// KafkaJS's admin client managing ACLs: reads one JSON command from argv and prints the
// broker's answers as JSON, for tests/integration/test_acl_admin.py.
//   node acls.js BOOTSTRAP '{"create": [...], "describe": {...}, "delete": [...]}'
// Each step is done when present, in that order: create, describe, delete, describe again.
"use strict";
const { Kafka, logLevel } = require("kafkajs");

async function main() {
  const [bootstrap, commandText] = process.argv.slice(2);
  const command = JSON.parse(commandText);
  const kafka = new Kafka({
    clientId: "strom-kafkajs-acls",
    brokers: bootstrap.split(","),
    logLevel: logLevel.NOTHING,
    retry: { retries: 3 },
  });
  const admin = kafka.admin();
  await admin.connect();
  const out = {};
  try {
    if (command.create) {
      out.created = await admin.createAcls({ acl: command.create });
    }
    if (command.describe) {
      out.described = (await admin.describeAcls(command.describe)).resources;
    }
    if (command.delete) {
      out.deleted = (await admin.deleteAcls({ filters: command.delete })).filterResponses;
      if (command.describe) {
        out.after = (await admin.describeAcls(command.describe)).resources;
      }
    }
  } catch (err) {
    out.error = { name: err.name, type: err.type || null, message: err.message };
  }
  await admin.disconnect();
  process.stdout.write(JSON.stringify(out));
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err));
  process.exit(1);
});
