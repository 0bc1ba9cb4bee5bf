import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["node_modules/", "data/", "bench/results/", "scratch/"] },
  js.configs.recommended,
  ...tseslint.configs.strict,
  {
    languageOptions: { globals: { process: "readonly", console: "readonly" } },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", ignoreRestSiblings: true }],
      "@typescript-eslint/consistent-type-imports": "error",
      // noUncheckedIndexedAccess makes every indexed read optional; in bit-set and table code
      // the index is known to be in range, and `!` says so without a runtime branch.
      "@typescript-eslint/no-non-null-assertion": "off",
    },
  },
  {
    // The dashboard runs in the browser (ES modules, no build step): the browser's globals it uses.
    files: ["web/**/*.js"],
    languageOptions: {
      globals: Object.fromEntries(
        ["addEventListener", "removeEventListener", "dispatchEvent", "document", "fetch", "history", "HTMLElement", "localStorage", "location", "navigator", "PopStateEvent", "URL", "URLSearchParams"].map((name) => [name, "readonly"]),
      ),
    },
  },
);
