//! Chat templates rendered as transformers renders them (`apply_chat_template`): Jinja via
//! minijinja with `trim_blocks` and `lstrip_blocks`, Python string methods through
//! minijinja-contrib's pycompat, `raise_exception`, and `bos_token` / `eos_token` in scope.

use minijinja::{context, Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// One chat turn.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Message { role: role.into(), content: content.into() }
    }
}

/// A compiled template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: Option<String>,
    eos: Option<String>,
}

fn raise_exception(message: String) -> std::result::Result<String, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

impl ChatTemplate {
    pub fn new(source: String, bos: Option<String>, eos: Option<String>) -> std::result::Result<Self, Error> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned("chat", source)?;
        Ok(ChatTemplate { env, bos, eos })
    }

    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let template = self.env.get_template("chat").map_err(|e| DataError::Template(e.to_string()))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos.clone().unwrap_or_default(),
                eos_token => self.eos.clone().unwrap_or_default(),
            })
            .map_err(|e| {
                // `raise_exception` messages are the template author's words: show them plainly.
                let detail = e.detail().map(str::to_string).unwrap_or_else(|| e.to_string());
                DataError::Template(detail)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Qwen2.5's template, abridged to the parts without tools.
    pub const CHATML: &str = "{%- if messages[0]['role'] == 'system' %}\n    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n{%- else %}\n    {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}\n{%- endif %}\n{%- for message in messages %}\n    {%- if not (message.role == 'system' and loop.first) %}\n        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n";

    const LLAMA3: &str = "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

    fn conversation() -> Vec<Message> {
        vec![Message::new("user", "Olá"), Message::new("assistant", " Oi! ")]
    }

    #[test]
    fn renders_chatml_with_default_system() {
        let t = ChatTemplate::new(CHATML.into(), None, Some("<|im_end|>".into())).unwrap();
        assert_eq!(
            t.render(&conversation(), false).unwrap(),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nOlá<|im_end|>\n<|im_start|>assistant\n Oi! <|im_end|>\n"
        );
        assert!(t.render(&conversation()[..1], true).unwrap().ends_with("<|im_start|>assistant\n"));
    }

    #[test]
    fn renders_llama3_with_bos_and_trim() {
        let t = ChatTemplate::new(LLAMA3.into(), Some("<|begin_of_text|>".into()), None).unwrap();
        assert_eq!(
            t.render(&conversation(), false).unwrap(),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nOlá<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nOi!<|eot_id|>"
        );
    }

    #[test]
    fn raise_exception_is_an_error_with_its_message() {
        let t = ChatTemplate::new("{{ raise_exception('only user/assistant roles') }}".into(), None, None).unwrap();
        let err = t.render(&conversation(), false).unwrap_err().to_string();
        assert!(err.contains("only user/assistant roles"), "{err}");
    }

    #[test]
    fn python_string_methods_work() {
        let t = ChatTemplate::new("{{ messages[0].content.strip().upper() }}{% if messages[1].content.startswith(' ') %}!{% endif %}".into(), None, None)
            .unwrap();
        assert_eq!(t.render(&conversation(), false).unwrap(), "OLÁ!");
    }
}
