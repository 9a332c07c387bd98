export * from './headers.js';
export * from './params.js';
export * from './uri.js';
export * from './name-addr.js';
export * from './message.js';
export * from './parser.js';
export * from './serializer.js';
export * from './response.js';
