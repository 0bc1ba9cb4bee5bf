/** The Bitrix24 REST protocol: a webhook client, its errors, and PHP-style query encoding. */
export {
  type BatchCommand,
  type BatchResponse,
  type Bitrix24Client,
  type Bitrix24ClientOptions,
  type Bitrix24Response,
  type Bitrix24Time,
  bitrix24Client,
  closeBitrix24Pools,
  redactWebhookUrl,
} from "./client.ts";
export { type Bitrix24ErrorBody, type NoAnswer, UPSTREAM_STATUS, UpstreamError, type UpstreamErrorCode, type UpstreamErrorDetails, upstreamErrorOf } from "./errors.ts";
export { encodeQuery, parseQuery } from "./query.ts";
