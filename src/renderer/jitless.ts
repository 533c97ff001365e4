/**
 * Imported first by main.ts, before any schema is built: zod would otherwise probe for eval
 * (`new Function('')`) while building the contract's object schemas, and under the dashboard's
 * CSP (script-src 'self', no 'unsafe-eval') that probe is reported as a CSP violation even
 * though zod catches it. With jitless, zod validates without generated code and never probes.
 */
import { config } from 'zod';

config({ jitless: true });
