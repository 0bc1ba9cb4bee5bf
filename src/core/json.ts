/**
 * How deep a JSON text nests, without parsing it: a body nested thousands of levels deep parses
 * fine but overflows the stack of whatever walks it next (a 500, or the sandbox's 502). Both
 * JSON readers of keygate (the API's, the sandbox's) refuse such a body before parsing it.
 */

/** Deeper than any body keygate takes (a batch call's filter is 7 levels deep); PHP's max_input_nesting_level is 64. */
export const MAX_JSON_DEPTH = 64;

/** Whether the text opens more than `max` arrays or objects inside one another (strings are skipped). */
export function jsonDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // a backslash escapes the next character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}
