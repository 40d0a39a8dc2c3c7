// Next.js replaces `process.env.NEXT_PUBLIC_*` with literals at build time; elsewhere `process`
// may not exist at all, which src/index.ts guards against.
declare const process: { env: Record<string, string | undefined> };
