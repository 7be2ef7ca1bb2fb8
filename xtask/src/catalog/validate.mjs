// Validates an AsyncAPI document (run by `cargo xtask asyncapi`): @asyncapi/parser's
// diagnostics, every error and warning failing, and then every message's examples against
// its payload and headers schemas (Ajv, which the parser does not do itself).
import { Parser } from '@asyncapi/parser';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import { readFileSync } from 'node:fs';

const text = readFileSync(process.argv[2], 'utf8');
const { document, diagnostics } = await new Parser().parse(text);
const severities = ['error', 'warning', 'info', 'hint'];
for (const d of diagnostics) {
  console.log(severities[d.severity], d.code, d.path.join('.'), d.message);
}
const failed = diagnostics.filter(d => d.severity <= 1).length;
if (!document || failed) {
  console.error(`${failed} errors or warnings`);
  process.exit(1);
}

const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv);
// OpenAPI's integer formats, which JSON Schema does not name.
ajv.addFormat('int32', true);
ajv.addFormat('int64', true);
let examples = 0;
const wrong = [];
for (const message of document.allMessages()) {
  const check = (what, schema, value) => {
    if (!schema) return;
    const validate = ajv.compile(schema.json());
    if (!validate(value)) {
      wrong.push(`${message.id()}: example ${what}: ${ajv.errorsText(validate.errors)}`);
    }
  };
  for (const example of message.examples()) {
    examples += 1;
    check('payload', message.payload(), example.payload());
    if (example.hasHeaders()) check('headers', message.headers(), example.headers());
  }
}
for (const line of wrong) console.error(line);
if (wrong.length) process.exit(1);
console.log(
  `valid AsyncAPI ${document.version()}: ${document.channels().length} channels, ` +
  `${document.allMessages().length} messages, ${document.operations().length} operations, ` +
  `${examples} examples valid against their schemas`
);
