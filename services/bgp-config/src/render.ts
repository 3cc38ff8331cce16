import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import Handlebars from 'handlebars';
import type { BirdView } from './model.js';

/** The template ships beside dist/ (package "files"), so it is found from the compiled code too. */
export const TEMPLATE_PATH = fileURLToPath(new URL('../templates/bird.conf.hbs', import.meta.url));

const hbs = Handlebars.create();
hbs.registerHelper('eq', (a: unknown, b: unknown) => a === b);

let compiled: HandlebarsTemplateDelegate<BirdView> | undefined;

/** Renders bird.conf for one host. Pure apart from reading the template once. */
export function renderBirdConf(view: BirdView, templatePath = TEMPLATE_PATH): string {
  if (!compiled || templatePath !== TEMPLATE_PATH) {
    const t = hbs.compile<BirdView>(readFileSync(templatePath, 'utf8'), { noEscape: true, strict: false });
    if (templatePath !== TEMPLATE_PATH) return t(view);
    compiled = t;
  }
  return compiled(view);
}
