import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// What `npm create vite` (react) writes: nothing topgun-specific.
export default defineConfig({
  plugins: [react()],
});
