/** The gateway's honesty checks: measured speed, the physical ceiling, strikes and the score. */
export { CHIP_BANDWIDTH, CEILING_MARGIN, chipBandwidth, ceilingTokensPerSecond, type ChipBandwidth } from './ceiling.js';
export { MIN_TIMED_DECODE_MS, SpeedBook, decodeRate, type JobTiming, type MeasuredSpeed, type SpeedSample } from './speed.js';
export { SCORE_DEFAULTS, scoreOf, type ScoreOptions } from './score.js';
export { SqlStrikeStore, STRIKE_REASONS, type NewStrike, type Strike, type StrikeReason, type StrikeStore } from './strikes.store.js';
export { Honesty, type HonestyOptions, type TimedAgent } from './honesty.js';
export {
  SqlAuditStore,
  type Audit,
  type AuditCounts,
  type AuditSource,
  type AuditStore,
  type NewAudit,
  type StoredFinding,
} from './audits.store.js';
